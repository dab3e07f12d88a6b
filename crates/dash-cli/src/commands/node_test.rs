//! `dash node drain` and `activate` output.

use dash_core::api::{NodeInfo, NodeState};

use super::state_change;

fn node(state: NodeState) -> NodeInfo {
    NodeInfo {
        id: "w1".into(),
        address: "10.0.0.2".into(),
        role: dash_core::api::NodeRole::Worker,
        state,
        labels: [("zone".to_string(), "a".to_string())].into(),
        capacity: Default::default(),
        allocated: Default::default(),
        replicas: 3,
        subnet: "10.89.1.0/24".into(),
        runtime: "crun".into(),
        last_seen_ms: 1,
        raft: None,
    }
}

#[test]
fn drain_and_activate_print_the_node_as_json_with_output_json() {
    for state in [NodeState::Drained, NodeState::Ready] {
        let n = node(state);
        let printed: serde_json::Value =
            serde_json::from_str(&state_change(&n, true)).expect("JSON");
        assert_eq!(printed, serde_json::to_value(&n).unwrap());
        assert_eq!(printed["state"], state.as_str());
    }
}

#[test]
fn drain_and_activate_print_id_and_state_as_a_table() {
    assert_eq!(state_change(&node(NodeState::Drained), false), "w1 drained");
    assert_eq!(state_change(&node(NodeState::Ready), false), "w1 ready");
}
