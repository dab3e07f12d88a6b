//! Restart decisions: the policy lives in `dash_core::spec::RestartPolicy`; this is the
//! bookkeeping around it.

use std::time::Duration;

use dash_core::spec::RestartPolicy;

/// What to do after a replica exited with `code`, having restarted `restarts` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    RestartIn(Duration),
    /// Exited for good (policy `never`, or `on-failure` with code 0).
    Stay,
    /// The restart budget is spent.
    GiveUp,
}

pub fn after_exit(policy: &RestartPolicy, code: i32, restarts: u32) -> AfterExit {
    if policy.should_restart(code, restarts) {
        AfterExit::RestartIn(policy.delay(restarts))
    } else if policy.max_attempts > 0
        && restarts >= policy.max_attempts
        && policy.should_restart(code, 0)
    {
        AfterExit::GiveUp
    } else {
        AfterExit::Stay
    }
}

#[cfg(test)]
mod tests {
    use dash_core::spec::RestartCondition;

    use super::*;

    #[test]
    fn first_restart_is_immediate_then_backs_off() {
        let p = RestartPolicy {
            backoff: Duration::from_millis(100),
            ..Default::default()
        };
        assert_eq!(after_exit(&p, 1, 0), AfterExit::RestartIn(Duration::ZERO));
        assert_eq!(
            after_exit(&p, 1, 3),
            AfterExit::RestartIn(Duration::from_millis(400))
        );
    }

    #[test]
    fn budget_and_conditions() {
        let p = RestartPolicy {
            condition: RestartCondition::OnFailure,
            max_attempts: 2,
            ..Default::default()
        };
        assert_eq!(after_exit(&p, 0, 0), AfterExit::Stay);
        assert_eq!(after_exit(&p, 3, 2), AfterExit::GiveUp);
        let never = RestartPolicy {
            condition: RestartCondition::Never,
            ..Default::default()
        };
        assert_eq!(after_exit(&never, 3, 0), AfterExit::Stay);
    }
}
