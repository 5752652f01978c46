//! The `loopback` device: takes every message and reports it delivered, after configurable
//! delays and with configurable failure rates, so demos and tests can see every path a real
//! device takes without a network. It receives texts too: injected through the API
//! (`POST /api/v1/devices/{name}/inbound`), or, with `echo = true`, an answer to every
//! message it sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use textgate_core::clock::now_ms;
use textgate_core::config::LoopbackConfig;
use tokio::sync::{mpsc, oneshot};

use crate::{Ack, BoxFuture, Device, DeviceEvent, DeviceState, OutboundSms, SendError, Submitted};

/// The built-in loopback device.
pub struct Loopback {
    name: String,
    cfg: LoopbackConfig,
    events: OnceLock<mpsc::Sender<DeviceEvent>>,
    next_id: AtomicU64,
}

impl Loopback {
    /// A loopback device with these settings.
    pub fn new(name: &str, cfg: LoopbackConfig) -> Loopback {
        // Ids start from the clock so that ids from before a restart are not reused.
        let start = (now_ms() as u64) << 16;
        Loopback {
            name: name.to_string(),
            cfg,
            events: OnceLock::new(),
            next_id: AtomicU64::new(start),
        }
    }

    /// A text from `from` to `to`, handed to the store like any device's; the receiver says
    /// when it is stored.
    fn receive(&self, from: &str, to: &str, body: &str) -> Option<oneshot::Receiver<bool>> {
        let events = self.events.get()?;
        let (ack, rx) = Ack::channel();
        let text = crate::InboundText {
            device: self.name.clone(),
            from: from.to_string(),
            to: to.to_string(),
            body: body.to_string(),
            encoding: if textgate_core::encoding::gsm7::is_gsm7(body) {
                "gsm7"
            } else {
                "ucs2"
            }
            .into(),
            parts: 1,
            partial: false,
            dedup_key: None,
            same_within: None,
            received_at: now_ms(),
        };
        crate::emit(
            events,
            DeviceEvent::Inbound {
                text,
                ack: Some(ack),
            },
        );
        Some(rx)
    }

    fn report(&self, part_ids: Vec<String>) {
        let Some(events) = self.events.get().cloned() else {
            return;
        };
        let delivered =
            !(self.cfg.undelivered_rate > 0.0 && fastrand::f64() < self.cfg.undelivered_rate);
        let device = self.name.clone();
        let send_all = move || {
            for id in part_ids {
                crate::emit(
                    &events,
                    DeviceEvent::Receipt {
                        device: device.clone(),
                        device_msg_id: id,
                        delivered,
                        // GSM 04.11 cause 27 "destination out of order", as an SMSC would report it.
                        code: (!delivered).then(|| "027".to_string()),
                        at: now_ms(),
                        ack: None,
                    },
                );
            }
        };
        let delay = self.cfg.report_delay.0;
        if delay.is_zero() {
            send_all();
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                send_all();
            });
        }
    }
}

impl Device for Loopback {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "loopback"
    }

    fn start(&self, events: mpsc::Sender<DeviceEvent>) {
        let _ = self.events.set(events);
    }

    fn send(&self, sms: OutboundSms) -> BoxFuture<'_, Result<Submitted, SendError>> {
        Box::pin(async move {
            if !self.cfg.delay.0.is_zero() {
                tokio::time::sleep(self.cfg.delay.0).await;
            }
            if self.cfg.transient_failure_rate > 0.0
                && fastrand::f64() < self.cfg.transient_failure_rate
            {
                return Err(SendError::Transient {
                    code: Some("LB-BUSY".into()),
                    reason: "the loopback device is simulating a busy SMSC".into(),
                });
            }
            if self.cfg.failure_rate > 0.0 && fastrand::f64() < self.cfg.failure_rate {
                return Err(SendError::Permanent {
                    code: Some("LB-REJECT".into()),
                    reason: format!("the loopback device is simulating a refusal of {}", sms.to),
                });
            }
            let n = u64::from(sms.segments.max(1));
            let first = self.next_id.fetch_add(n, Ordering::Relaxed);
            let part_ids: Vec<String> = (first..first + n).map(|i| format!("{i:x}")).collect();
            self.report(part_ids.clone());
            if self.cfg.echo {
                // The "phone" answers with the same text, from the number it was sent to.
                let from = sms.from.clone().unwrap_or_else(|| self.cfg.number.clone());
                if let Some(rx) = self.receive(&sms.to, &from, &format!("Echo: {}", sms.body)) {
                    drop(rx);
                }
            }
            Ok(Submitted { part_ids })
        })
    }

    fn state(&self) -> DeviceState {
        DeviceState::Up
    }

    fn recover(&self, part_ids: Vec<String>) {
        // The loopback "network" delivered them; only the receipts died with the process.
        self.report(part_ids);
    }

    fn window(&self) -> usize {
        self.cfg.window as usize
    }

    fn simulate_inbound(
        &self,
        from: &str,
        to: &str,
        body: &str,
    ) -> Option<oneshot::Receiver<bool>> {
        let to = if to.is_empty() { &self.cfg.number } else { to };
        self.receive(from, to, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use textgate_core::config::Dur;

    fn sms(segments: u16) -> OutboundSms {
        OutboundSms {
            message_id: 1,
            attempt: 1,
            to: "+15550000001".into(),
            from: None,
            body: "x".into(),
            segments,
        }
    }

    #[tokio::test]
    async fn takes_and_reports_every_part() {
        let lb = Loopback::new("lb", LoopbackConfig::default());
        let (tx, mut rx) = mpsc::channel(crate::EVENTS_CAPACITY);
        lb.start(tx);
        let got = lb.send(sms(3)).await.unwrap();
        assert_eq!(got.part_ids.len(), 3);
        for id in &got.part_ids {
            match rx.recv().await.unwrap() {
                DeviceEvent::Receipt {
                    device_msg_id,
                    delivered,
                    ..
                } => {
                    assert_eq!(&device_msg_id, id);
                    assert!(delivered);
                }
                other => panic!("{other:?}"),
            }
        }
        let again = lb.send(sms(1)).await.unwrap();
        assert!(
            !got.part_ids.contains(&again.part_ids[0]),
            "ids are never reused"
        );
    }

    #[tokio::test]
    async fn recovers_receipts_lost_in_a_crash() {
        let lb = Loopback::new("lb", LoopbackConfig::default());
        let (tx, mut rx) = mpsc::channel(crate::EVENTS_CAPACITY);
        lb.start(tx);
        lb.recover(vec!["a1".into(), "a2".into()]);
        for want in ["a1", "a2"] {
            assert!(
                matches!(rx.recv().await, Some(DeviceEvent::Receipt { device_msg_id, delivered: true, .. }) if device_msg_id == want)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failure_knobs_and_report_delay() {
        let cfg = LoopbackConfig {
            failure_rate: 1.0,
            ..Default::default()
        };
        let lb = Loopback::new("lb", cfg);
        assert!(matches!(
            lb.send(sms(1)).await,
            Err(SendError::Permanent { .. })
        ));
        let cfg = LoopbackConfig {
            transient_failure_rate: 1.0,
            ..Default::default()
        };
        assert!(matches!(
            Loopback::new("lb", cfg).send(sms(1)).await,
            Err(SendError::Transient { .. })
        ));
        let cfg = LoopbackConfig {
            undelivered_rate: 1.0,
            report_delay: Dur(Duration::from_secs(5)),
            ..Default::default()
        };
        let lb = Loopback::new("lb", cfg);
        let (tx, mut rx) = mpsc::channel(crate::EVENTS_CAPACITY);
        lb.start(tx);
        lb.send(sms(1)).await.unwrap();
        assert!(rx.try_recv().is_err(), "not before the delay");
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(matches!(
            rx.recv().await,
            Some(DeviceEvent::Receipt {
                delivered: false,
                ..
            })
        ));
    }
}
