//! The statuses of an outbound message, in the order a message moves through them
//! (docs/architecture.md): `queued`, `scheduled`, `sending`, `sent`, `delivered`, and the ends
//! `undelivered`, `failed`, `expired`, `cancelled`.

use std::fmt;

/// Where an outbound message is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Accepted and waiting for a device.
    Queued,
    /// Accepted, held until its `schedule_at`.
    Scheduled,
    /// Claimed by a device worker (under a lease).
    Sending,
    /// An SMSC, modem or port server took it; waiting for a delivery receipt.
    Sent,
    /// The handset got it (every part, for a long text).
    Delivered,
    /// The network gave up on it (any part).
    Undelivered,
    /// A device refused it for good, or every retry was used.
    Failed,
    /// Its validity ran out before it could be sent.
    Expired,
    /// Cancelled before it was sent.
    Cancelled,
}

impl Status {
    /// Every status, in life order.
    pub const ALL: [Status; 9] = [
        Status::Queued,
        Status::Scheduled,
        Status::Sending,
        Status::Sent,
        Status::Delivered,
        Status::Undelivered,
        Status::Failed,
        Status::Expired,
        Status::Cancelled,
    ];

    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Scheduled => "scheduled",
            Status::Sending => "sending",
            Status::Sent => "sent",
            Status::Delivered => "delivered",
            Status::Undelivered => "undelivered",
            Status::Failed => "failed",
            Status::Expired => "expired",
            Status::Cancelled => "cancelled",
        }
    }

    /// The status with this name, if there is one.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A final status never changes again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Delivered
                | Status::Undelivered
                | Status::Failed
                | Status::Expired
                | Status::Cancelled
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_finals_are_the_ends() {
        for st in Status::ALL {
            assert_eq!(Status::parse(st.as_str()), Some(st));
        }
        assert_eq!(Status::parse("bogus"), None);
        let finals: Vec<_> = Status::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(
            finals,
            [
                Status::Delivered,
                Status::Undelivered,
                Status::Failed,
                Status::Expired,
                Status::Cancelled
            ]
        );
    }
}
