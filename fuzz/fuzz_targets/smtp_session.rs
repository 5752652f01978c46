//! The SMTP session fed arbitrary client bytes in arbitrary chunks, every action answered
//! arbitrarily (right or wrong answers, failures), with STARTTLS completed or not, and a
//! timeout or shutdown at the end. It must never panic, and what it writes must stay
//! well-formed replies.
#![no_main]

use std::sync::Arc;

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use textgate_core::config::{Bytes, SmtpConfig};
use textgate_smtp::session::{Action, Answer, Owner, Peer, Session, Settings};

fn owner(u: &mut Unstructured) -> arbitrary::Result<Option<Owner>> {
    Ok(if u.arbitrary()? {
        Some(Owner {
            id: u.arbitrary()?,
            name: "bob".into(),
            emails: if u.arbitrary()? {
                vec!["bob@example.com".into()]
            } else {
                Vec::new()
            },
        })
    } else {
        None
    })
}

fn answer(u: &mut Unstructured, action: &Action) -> arbitrary::Result<Answer> {
    // Mostly the answer the action asks for, sometimes another one.
    let right = u.ratio(7u8, 8u8)?;
    let kind = if right {
        match action {
            Action::Authenticate(_) => 0,
            Action::FindSender(_) => 1,
            Action::Deliver(_) => 2,
            _ => 3,
        }
    } else {
        u.int_in_range(0..=5)?
    };
    Ok(match kind {
        0 => Answer::Authenticated(owner(u)?),
        1 => Answer::Sender(owner(u)?),
        4 => Answer::SenderRefused("an administrator's address".into()),
        5 => Answer::LockedOut(std::time::Duration::from_secs(u.int_in_range(0..=3600)?)),
        2 => {
            let n = match action {
                Action::Deliver(d) if u.arbitrary()? => d.to.len(),
                _ => u.int_in_range(0..=8)?,
            };
            Answer::Stored((0..n as i64).collect())
        }
        _ => Answer::Unavailable,
    })
}

/// With TEXTGATE_FUZZ_TRACE set, the conversation goes to stderr (to check what a seed
/// reaches: `TEXTGATE_FUZZ_TRACE=1 .../smtp_session fuzz/seeds/smtp_session/FILE`).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("TEXTGATE_FUZZ_TRACE").is_some())
}

/// Every reply line is `DDD<space or dash>text<CRLF>`, with no other CR or LF.
fn check_output(out: &[u8]) {
    let text = std::str::from_utf8(out).expect("replies are UTF-8");
    if trace() {
        eprint!("S: {text}");
    }
    if text.is_empty() {
        return;
    }
    assert!(
        text.ends_with("\r\n"),
        "a reply without its line end: {text:?}"
    );
    for line in text[..text.len() - 2].split("\r\n") {
        let b = line.as_bytes();
        assert!(b.len() >= 4, "short reply line {line:?}");
        assert!(
            b[..3].iter().all(u8::is_ascii_digit) && (b'2'..=b'5').contains(&b[0]),
            "{line:?}"
        );
        assert!(b[3] == b' ' || b[3] == b'-', "{line:?}");
        assert!(
            !line.contains(['\r', '\n']),
            "a bare CR or LF inside a reply: {line:?}"
        );
    }
}

fn run(u: &mut Unstructured) -> arbitrary::Result<()> {
    let cfg = SmtpConfig {
        domains: vec!["sms.example.com".into()],
        addresses: vec!["textmsg@example.com".into()],
        allowed_senders: vec!["*@example.com".into()],
        max_message_bytes: Bytes(u.int_in_range(0..=4096)?),
        max_recipients: u.int_in_range(0..=4)?,
        tls_cert: Some("cert.pem".into()),
        tls_key: Some("key.pem".into()),
        truncate: u.arbitrary()?,
        ..SmtpConfig::default()
    };
    let mut settings = Settings::new(&cfg, "US".parse().ok(), u.int_in_range(0..=4)?);
    settings.tls_available = u.arbitrary()?;
    let settings = Arc::new(settings);
    let peer = Peer {
        loopback: u.arbitrary()?,
        trusted: u.arbitrary()?,
    };
    let mut s = Session::new(settings.clone(), peer);
    check_output(&s.take_output());
    while !u.is_empty() {
        let len = u.int_in_range(0..=64usize)?;
        let chunk = u.bytes(len.min(u.len()))?.to_vec();
        if trace() {
            eprintln!("C: {:?}", String::from_utf8_lossy(&chunk));
        }
        let mut action = s.ingest(&chunk);
        let mut closed = false;
        while let Some(a) = action {
            if trace() {
                eprintln!("A: {a:?}");
            }
            if let Action::Deliver(d) = &a {
                assert!(!d.to.is_empty(), "a delivery with no recipient");
                assert!(
                    d.to.len() <= settings.max_recipients,
                    "more recipients than allowed"
                );
                assert!(
                    d.body.segments() <= settings.max_parts,
                    "a body of more parts than allowed"
                );
            }
            action = match a {
                Action::StartTls => {
                    check_output(&s.take_output());
                    if u.arbitrary()? {
                        s.tls_started();
                        None
                    } else {
                        // The handshake failed: the connection is dropped.
                        closed = true;
                        None
                    }
                }
                Action::Close => {
                    closed = true;
                    assert!(s.is_closed());
                    None
                }
                other => {
                    let ans = answer(u, &other)?;
                    s.resolve(ans)
                }
            };
        }
        check_output(&s.take_output());
        if closed {
            return Ok(());
        }
    }
    let end = if u.arbitrary().unwrap_or(false) {
        s.timed_out()
    } else {
        s.shutting_down()
    };
    assert_eq!(end, Action::Close);
    assert!(s.is_closed());
    check_output(&s.take_output());
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let _ = run(&mut u);
});
