//! The VXLAN devices' neighbour and FDB entries for the other nodes'
//! VTEPs, programmed by a task of their own: a converge hands the wanted
//! VTEPs over and goes on. On a busy host a few hundred entries take
//! seconds of wall time (each netlink answer waits for the process to be
//! scheduled), and a route reflector that programmed them inline added no
//! new peer meanwhile.
//!
//! The latest hand-over supersedes one not yet applied; a resync (`full`:
//! read the devices' tables and repair them) is kept until it ran.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tracing::{info, info_span, warn, Instrument};

use crate::netlink::Netlink;
use crate::tunnel::{sync_vteps, update_vteps, Vtep, VXLAN_DEVICE, VXLAN_V6_DEVICE};

/// What one hand-over asks for, per device (IPv4, IPv6).
#[derive(Default)]
struct Work {
    /// `None`: the device is not set up (yet); leave it alone.
    wanted: [Option<Vec<Vtep>>; 2],
    /// Read the devices' tables instead of trusting what was programmed.
    full: bool,
    closed: bool,
}

#[derive(Default)]
struct Slot {
    work: Mutex<Option<Work>>,
    wake: Notify,
}

/// The handle; the task ends when it is dropped.
pub struct VtepTask {
    slot: Arc<Slot>,
}

impl VtepTask {
    pub fn spawn(nl: Netlink) -> Self {
        let slot = Arc::new(Slot::default());
        let task = slot.clone();
        tokio::spawn(
            async move {
                // What the last sync of each device programmed.
                let mut programmed: [Option<Vec<Vtep>>; 2] = [None, None];
                loop {
                    let work = task.work.lock().unwrap_or_else(|e| e.into_inner()).take();
                    let Some(work) = work else {
                        task.wake.notified().await;
                        continue;
                    };
                    if work.closed {
                        break;
                    }
                    apply(&nl, &mut programmed, work).await;
                }
            }
            .instrument(info_span!("vteps")),
        );
        Self { slot }
    }

    /// The VTEPs each device should hold (`None` for a device not set up);
    /// `full` reads the devices' tables and repairs them (the resync).
    pub fn sync(&self, v4: Option<&[Vtep]>, v6: Option<&[Vtep]>, full: bool) {
        self.hand_over(|w| {
            w.wanted = [v4.map(<[Vtep]>::to_vec), v6.map(<[Vtep]>::to_vec)];
            w.full |= full;
        });
    }

    fn hand_over(&self, change: impl FnOnce(&mut Work)) {
        {
            let mut work = self.slot.work.lock().unwrap_or_else(|e| e.into_inner());
            change(work.get_or_insert_with(Work::default));
        }
        self.slot.wake.notify_one();
    }
}

impl Drop for VtepTask {
    fn drop(&mut self) {
        self.hand_over(|w| w.closed = true);
    }
}

async fn apply(nl: &Netlink, programmed: &mut [Option<Vec<Vtep>>; 2], work: Work) {
    let devices = [VXLAN_DEVICE, VXLAN_V6_DEVICE];
    for (i, (device, wanted)) in devices.into_iter().zip(work.wanted).enumerate() {
        let Some(vteps) = wanted else { continue };
        let result = match programmed[i].take() {
            Some(before) if !work.full => update_vteps(nl, device, &before, &vteps).await,
            _ => sync_vteps(nl, device, &vteps).await,
        };
        match result {
            Ok(n) => {
                if n > 0 {
                    info!(ops = n, %device, "VXLAN neighbour/FDB entries updated");
                }
                programmed[i] = Some(vteps);
            }
            // Unknown state: the next sync reads the device.
            Err(error) => warn!(%error, %device, "syncing VXLAN entries failed"),
        }
    }
}
