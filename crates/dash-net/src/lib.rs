//! sysnet: container networking done natively on one node.
