//! `brindle-testbed`: network-namespace topologies for tests and the demo.
