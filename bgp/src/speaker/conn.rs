//! One transport connection to a neighbour: a reader task that only frames
//! the byte stream into whole messages (checking each header as soon as it
//! is in) and a writer task that sends what the peer task queues. No BGP
//! logic: decoding and decisions happen in the peer task and the session
//! layer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, Instrument};

use crate::packet::{self, DecodeContext, MAX_EXTENDED_MESSAGE_SIZE};

/// A whole message read from connection `conn`; `None` at EOF or error.
#[derive(Debug)]
pub(super) struct Frame {
    pub(super) conn: u64,
    pub(super) frame: Option<Bytes>,
}

pub(super) struct Conn {
    pub(super) id: u64,
    /// The largest message the reader accepts (4096 until extended messages
    /// are negotiated); shared with the reader task.
    pub(super) max_message: Arc<AtomicUsize>,
    pub(super) writer: mpsc::UnboundedSender<Bytes>,
    writer_task: JoinHandle<()>,
    reader_task: JoinHandle<()>,
    pub(super) local: SocketAddr,
}

impl Conn {
    /// Takes over `stream` as connection `id`: a reader task framing what
    /// arrives into `frames`, a writer task sending what is queued.
    pub(super) fn open(stream: TcpStream, id: u64, frames: mpsc::Sender<Frame>) -> Conn {
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
        let (read, write) = stream.into_split();
        let (wtx, wrx) = mpsc::unbounded_channel();
        let writer_task = tokio::spawn(writer(write, wrx).in_current_span());
        let max_message = Arc::new(AtomicUsize::new(packet::MAX_MESSAGE_SIZE));
        let reader_task =
            tokio::spawn(reader(read, id, frames, max_message.clone()).in_current_span());
        Conn {
            id,
            max_message,
            writer: wtx,
            writer_task,
            reader_task,
            local,
        }
    }

    /// Flush what is queued, then close. The writer ends on its own once
    /// the queue is drained.
    pub(super) fn close(self) -> JoinHandle<()> {
        self.reader_task.abort();
        self.writer_task
    }
}

/// Splits the byte stream into whole messages by the header's length field;
/// `None` at EOF or on error. The header is checked (marker, length within
/// 19..=`max_message`, type and per-type bounds: [`packet::decode_header`])
/// as soon as its 19 octets are in, never after waiting for a length the
/// header may have made up (RFC 4271 §6.1): a bad header is passed on
/// alone and the reader stops, and the session's decoder turns it into the
/// right NOTIFICATION at once.
async fn reader(
    mut read: OwnedReadHalf,
    conn: u64,
    peer: mpsc::Sender<Frame>,
    max_message: Arc<AtomicUsize>,
) {
    let mut buf = BytesMut::with_capacity(MAX_EXTENDED_MESSAGE_SIZE + 1);
    loop {
        loop {
            let ctx = DecodeContext {
                max_message_size: max_message.load(Ordering::Relaxed),
                ..DecodeContext::default()
            };
            let (frame, last) = match packet::split_frame(&mut buf, &ctx) {
                None => break,
                Some(packet::Frame::Message(frame)) => (frame, false),
                Some(packet::Frame::BadHeader(header)) => (header, true),
            };
            let sent = peer
                .send(Frame {
                    conn,
                    frame: Some(frame),
                })
                .await;
            if sent.is_err() || last {
                return;
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = peer.send(Frame { conn, frame: None }).await;
                return;
            }
            Ok(_) => {}
        }
    }
}

/// Writes queued messages until the queue is closed and drained, then shuts
/// the connection down.
async fn writer(mut write: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(message) = queue.recv().await {
        if let Err(error) = write.write_all(&message).await {
            debug!(%error, "write failed");
            return;
        }
    }
    let _ = write.shutdown().await;
}
