//! The SMTP conversation as a sans-IO state machine: bytes in, reply bytes out, and
//! [`Action`]s for what needs the outside world (checking a password, finding a sender's
//! user, storing texts, starting TLS, closing). No socket, no clock, no database: tests feed
//! bytes and read replies.
//!
//! Commands are parsed by `smtp-proto`. While an action is outstanding the session buffers
//! further input (a PIPELINING client may already have sent the next commands) and goes on
//! with it once the caller gives the [`Answer`].
//!
//! Replies carry enhanced status codes (RFC 3463, advertised as ENHANCEDSTATUSCODES,
//! RFC 2034). The answers of docs/email.md: an unauthorised sender gets `550 5.7.1` at MAIL,
//! a recipient outside the configured domains and addresses `550 5.7.1` at RCPT, a recipient
//! that is not a number `550 5.1.1` at RCPT, and `250` after DATA only once every text is
//! stored.

use std::sync::Arc;

use smtp_proto::request::receiver::{
    DataReceiver, DummyDataReceiver, DummyLineReceiver, LineReceiver, RequestReceiver,
};
use smtp_proto::{Error as ProtoError, Request};
use textgate_core::address::Recipient;
use textgate_core::config::SmtpConfig;
use textgate_core::encoding::{Body, BodyError};

use crate::mapping::{subject_numbers, Rules, Target, TargetError};
use crate::text::{read_mail, truncate_to_fit};

/// Commands that may fail before the session gives up on the client.
const MAX_ERRORS: u32 = 20;
/// Failed AUTH attempts before the session gives up on the client (a brake on guessing).
const MAX_AUTH_FAILURES: u32 = 3;
/// Bad lines quoted in a reply, at most.
const MAX_LISTED: usize = 5;

/// What the session needs to know about the listener it runs in.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Domains, addresses and allowed senders.
    pub rules: Rules,
    /// The largest message taken, in bytes (SIZE, RFC 1870).
    pub max_message_bytes: usize,
    /// Texts one e-mail may make.
    pub max_recipients: usize,
    /// `[server] max_parts`.
    pub max_parts: u16,
    /// `[smtp] truncate`.
    pub truncate: bool,
    /// Whether STARTTLS can be offered (a certificate is configured).
    pub tls_available: bool,
    /// `[smtp] trusted_networks`.
    pub trusted: Vec<textgate_core::net::Cidr>,
}

impl Settings {
    /// From the checked configuration.
    pub fn new(
        smtp: &SmtpConfig,
        country: Option<textgate_core::address::Country>,
        max_parts: u16,
    ) -> Settings {
        Settings {
            rules: Rules::new(smtp, country),
            max_message_bytes: usize::try_from(smtp.max_message_bytes.0).unwrap_or(usize::MAX),
            max_recipients: smtp.max_recipients,
            max_parts,
            truncate: smtp.truncate,
            tls_available: smtp.tls_cert.is_some() && smtp.tls_key.is_some(),
            // Checked by `textgate check` and at start; an entry that does not parse trusts
            // nothing.
            trusted: smtp
                .trusted_networks
                .iter()
                .filter_map(|n| n.parse().ok())
                .collect(),
        }
    }
}

/// What the listener knows of the client from its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// It connected from this machine: AUTH is offered without TLS.
    pub loopback: bool,
    /// Its address is in `[smtp] trusted_networks`: mail from allowed senders is taken
    /// without AUTH.
    pub trusted: bool,
}

impl Peer {
    /// The client at `ip`, under these settings.
    pub fn of(ip: std::net::IpAddr, settings: &Settings) -> Peer {
        let ip = ip.to_canonical();
        Peer {
            loopback: ip.is_loopback(),
            trusted: settings.trusted.iter().any(|n| n.contains(ip)),
        }
    }
}

/// The textgate user who owns the texts of a mail transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub id: i64,
    /// User name (for logs).
    pub name: String,
    /// The user's own e-mail addresses: the only envelope senders an authenticated session
    /// may use (besides `<>`).
    pub emails: Vec<String>,
}

/// A name and secret given with AUTH PLAIN or LOGIN (RFC 4616, and the LOGIN draft).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (authentication identity).
    pub username: String,
    /// A password or an API key.
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Texts to store: the result of one accepted e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Who owns them.
    pub owner: Owner,
    /// The envelope sender.
    pub mail_from: String,
    /// One text per recipient.
    pub to: Vec<Recipient>,
    /// The text.
    pub body: Body,
}

/// What the session needs done before it can go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Check a password or API key; answer [`Answer::Authenticated`].
    Authenticate(Credentials),
    /// Find the user an allowed sender's mail belongs to; answer [`Answer::Sender`].
    FindSender(String),
    /// Store these texts; answer [`Answer::Stored`] once committed.
    Deliver(Delivery),
    /// Write what is pending, then start TLS on the connection and call
    /// [`Session::tls_started`].
    StartTls,
    /// Write what is pending, then close the connection.
    Close,
}

/// The outcome of an [`Action`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The credentials' user, or `None` if they are wrong.
    Authenticated(Option<Owner>),
    /// The sender's user (or the default owner), or `None` if there is none.
    Sender(Option<Owner>),
    /// The sender may not send without AUTH, for this reason (an administrator's address).
    SenderRefused(String),
    /// The texts are committed, with these ids.
    Stored(Vec<i64>),
    /// Too many failed sign-ins for this name or from this address: not tried, and the
    /// session ends; the lock-out lasts this much longer.
    LockedOut(std::time::Duration),
    /// The outside world failed (a database error): the client should try again later.
    Unavailable,
    /// The sender's quota would be passed: nothing was stored; why, and when it resets.
    OverQuota(String),
}

#[derive(Debug)]
enum SaslStep {
    /// AUTH PLAIN sent without an initial response: waiting for it.
    Plain,
    /// AUTH LOGIN: waiting for the user name.
    LoginUser,
    /// AUTH LOGIN: waiting for the password of this user.
    LoginPassword(String),
}

enum State {
    /// Reading commands.
    Command(RequestReceiver),
    /// A command line was too long: skipping to its end.
    SkipLine(DummyLineReceiver),
    /// Reading a SASL response line.
    Sasl(SaslStep, LineReceiver<()>),
    /// Reading the message after DATA.
    Data(DataReceiver),
    /// The message went over the size limit: reading it to its end without keeping it.
    DataTooBig(DummyDataReceiver),
    /// An action is outstanding.
    Waiting(Pending),
    /// STARTTLS was accepted; waiting for the handshake.
    Handshake,
    /// The session is over.
    Closed,
}

#[derive(Debug)]
enum Pending {
    Auth,
    Sender(String),
    Deliver,
}

/// The current mail transaction (MAIL FROM to the end of DATA).
#[derive(Debug)]
struct Transaction {
    from: String,
    owner: Owner,
    numbers: Vec<Recipient>,
    subject_mode: bool,
    data: Vec<u8>,
}

/// One SMTP conversation.
pub struct Session {
    settings: Arc<Settings>,
    peer: Peer,
    tls: bool,
    state: State,
    input: Vec<u8>,
    out: Vec<u8>,
    ehlo: bool,
    greeted: bool,
    authenticated: Option<Owner>,
    tx: Option<Transaction>,
    errors: u32,
    auth_failures: u32,
}

impl Session {
    /// A new session with a client; the greeting is already in [`Session::take_output`].
    pub fn new(settings: Arc<Settings>, peer: Peer) -> Session {
        let mut s = Session {
            settings,
            peer,
            tls: false,
            state: State::Command(RequestReceiver::default()),
            input: Vec::new(),
            out: Vec::new(),
            ehlo: false,
            greeted: false,
            authenticated: None,
            tx: None,
            errors: 0,
            auth_failures: 0,
        };
        let host = s.settings.rules.hostname().to_string();
        s.reply(220, "", &format!("{host} ESMTP textgate ready"));
        s
    }

    /// The reply bytes produced so far; the caller writes them to the client.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Whether the session is reading a message (the DATA timeout applies).
    pub fn in_data(&self) -> bool {
        matches!(self.state, State::Data(_) | State::DataTooBig(_))
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Feeds bytes from the client. Returns what must be done before more input can be
    /// handled; while an action is outstanding, input is only buffered.
    pub fn ingest(&mut self, bytes: &[u8]) -> Option<Action> {
        if self.is_closed() {
            return None;
        }
        self.input.extend_from_slice(bytes);
        self.run()
    }

    /// Gives the outcome of the outstanding action and goes on with buffered input.
    pub fn resolve(&mut self, answer: Answer) -> Option<Action> {
        let State::Waiting(pending) =
            std::mem::replace(&mut self.state, State::Command(RequestReceiver::default()))
        else {
            // An answer nobody asked for changes nothing.
            return None;
        };
        match (pending, answer) {
            (_, Answer::Unavailable) => {
                self.tx = None;
                self.reply(
                    451,
                    "4.3.0",
                    "Temporary failure in textgate's database; try again later",
                );
            }
            (Pending::Auth, Answer::LockedOut(after)) => {
                let minutes = after.as_secs().div_ceil(60).max(1);
                return Some(self.close(
                    421,
                    "4.7.0",
                    &format!("Too many failed authentications for this user or from your address; try again in {minutes} minute(s)"),
                ));
            }
            (Pending::Auth, Answer::Authenticated(Some(owner))) => {
                self.authenticated = Some(owner);
                self.reply(235, "2.7.0", "Authentication successful");
            }
            (Pending::Auth, _) => {
                self.auth_failures += 1;
                self.reply(535, "5.7.8", "Authentication credentials invalid");
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    return Some(self.close(421, "4.7.0", "Too many failed authentications"));
                }
            }
            (Pending::Sender(from), Answer::Sender(Some(owner))) => {
                self.start_transaction(from, owner);
            }
            (Pending::Sender(from), Answer::SenderRefused(why)) => {
                self.reply(550, "5.7.1", &format!("<{from}>: {why}"));
            }
            (Pending::Sender(from), _) => {
                self.reply(
                    550,
                    "5.7.1",
                    &format!(
                        "<{from}> may send, but no textgate user has this e-mail address: \
                         ask an administrator to set it on your user, or authenticate (AUTH)"
                    ),
                );
            }
            (Pending::Deliver, Answer::Stored(ids)) => {
                let n = ids.len();
                let s = if n == 1 { "" } else { "s" };
                let shown: Vec<String> = ids.iter().take(MAX_LISTED).map(i64::to_string).collect();
                let more = if n > MAX_LISTED { ", …" } else { "" };
                self.reply(
                    250,
                    "2.0.0",
                    &format!("OK: {n} text{s} stored (id {}{more})", shown.join(", ")),
                );
            }
            (Pending::Deliver, Answer::OverQuota(why)) => {
                // Temporary: a day's or month's limit resets, and the relay tries again.
                self.tx = None;
                self.reply(452, "4.7.1", &format!("Not stored: {why}"));
            }
            (Pending::Deliver, _) => {
                self.reply(
                    451,
                    "4.3.0",
                    "The texts could not be stored; try again later",
                );
            }
        }
        self.run()
    }

    /// The client took too long: says so and ends the session.
    pub fn timed_out(&mut self) -> Action {
        self.close(421, "4.4.2", "Timeout waiting for the client; closing")
    }

    /// The server is stopping: says so and ends the session.
    pub fn shutting_down(&mut self) -> Action {
        self.close(421, "4.3.2", "textgate is shutting down; try again later")
    }

    /// TLS is up: everything learnt before it is forgotten (RFC 3207 §4.2), and the client
    /// must say EHLO again.
    pub fn tls_started(&mut self) {
        self.tls = true;
        self.ehlo = false;
        self.greeted = false;
        self.authenticated = None;
        self.tx = None;
        self.input.clear();
        self.state = State::Command(RequestReceiver::default());
    }

    fn auth_offered(&self) -> bool {
        self.tls || self.peer.loopback
    }

    fn reply(&mut self, code: u16, esc: &str, text: &str) {
        // Replies are single lines: anything from the client quoted in one must not break it.
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let line = if esc.is_empty() {
            format!("{code} {text}\r\n")
        } else {
            format!("{code} {esc} {text}\r\n")
        };
        self.out.extend_from_slice(line.as_bytes());
    }

    fn close(&mut self, code: u16, esc: &str, text: &str) -> Action {
        self.reply(code, esc, text);
        self.state = State::Closed;
        self.input.clear();
        self.tx = None;
        Action::Close
    }

    /// Counts a failed command; too many end the session.
    fn error(&mut self, code: u16, esc: &str, text: &str) -> Option<Action> {
        self.reply(code, esc, text);
        self.errors += 1;
        (self.errors >= MAX_ERRORS).then(|| self.close(421, "4.7.0", "Too many errors; closing"))
    }

    fn run(&mut self) -> Option<Action> {
        let input = std::mem::take(&mut self.input);
        let mut rest: &[u8] = &input;
        let action = self.step_all(&mut rest);
        match action {
            // Nothing sent after STARTTLS on the clear connection may be taken as said over
            // TLS (the command injection of CVE-2011-0411), and a closed session reads no more.
            Some(Action::StartTls) | Some(Action::Close) => {}
            _ => self.input = rest.to_vec(),
        }
        action
    }

    fn step_all(&mut self, rest: &mut &[u8]) -> Option<Action> {
        loop {
            if rest.is_empty() {
                return None;
            }
            let mut it = rest.iter();
            match &mut self.state {
                State::Command(rx) => {
                    let parsed = rx.ingest(&mut it).map(Request::into_owned);
                    *rest = it.as_slice();
                    let action = match parsed {
                        Ok(req) => self.command(req),
                        Err(ProtoError::NeedsMoreData { .. }) => None,
                        Err(ProtoError::ResponseTooLong) => {
                            self.state = State::SkipLine(DummyLineReceiver::default());
                            None
                        }
                        Err(e) => self.syntax_error(e),
                    };
                    if action.is_some() {
                        return action;
                    }
                }
                State::SkipLine(rx) => {
                    let done = rx.ingest(&mut it);
                    *rest = it.as_slice();
                    if done {
                        self.state = State::Command(RequestReceiver::default());
                        if let Some(a) = self.error(500, "5.5.2", "Line too long") {
                            return Some(a);
                        }
                    }
                }
                State::Sasl(_, rx) => {
                    let done = rx.ingest(&mut it);
                    *rest = it.as_slice();
                    if done {
                        if let Some(a) = self.sasl_line() {
                            return Some(a);
                        }
                    }
                }
                State::Data(rx) => {
                    let Some(tx) = self.tx.as_mut() else {
                        self.state = State::Command(RequestReceiver::default());
                        continue;
                    };
                    let done = rx.ingest(&mut it, &mut tx.data);
                    *rest = it.as_slice();
                    if done {
                        if let Some(a) = self.end_of_data() {
                            return Some(a);
                        }
                    } else if tx.data.len() > self.settings.max_message_bytes {
                        // Keep reading to the final dot, so that the reply comes at the right
                        // time, but keep nothing more.
                        tx.data = Vec::new();
                        let skip = DummyDataReceiver::new_data(rx);
                        self.state = State::DataTooBig(skip);
                    }
                }
                State::DataTooBig(rx) => {
                    let done = rx.ingest(&mut it);
                    *rest = it.as_slice();
                    if done {
                        self.tx = None;
                        self.state = State::Command(RequestReceiver::default());
                        let max = self.settings.max_message_bytes;
                        self.reply(
                            552,
                            "5.3.4",
                            &format!("Message too big: the most taken is {max} bytes (SIZE)"),
                        );
                    }
                }
                State::Waiting(_) | State::Handshake | State::Closed => return None,
            }
        }
    }

    fn syntax_error(&mut self, e: ProtoError) -> Option<Action> {
        match e {
            ProtoError::InvalidSenderAddress => {
                self.error(501, "5.1.7", "Bad sender address syntax")
            }
            ProtoError::InvalidRecipientAddress => {
                self.error(501, "5.1.3", "Bad recipient address syntax")
            }
            ProtoError::SyntaxError { syntax } => {
                self.error(501, "5.5.2", &format!("Syntax error: expected {syntax}"))
            }
            ProtoError::InvalidParameter { param } => {
                self.error(501, "5.5.4", &format!("Invalid parameter {param}"))
            }
            ProtoError::UnsupportedParameter { param } => {
                let param: String = param.chars().take(40).collect();
                self.error(504, "5.5.4", &format!("Unsupported parameter {param}"))
            }
            _ => self.error(500, "5.5.1", "Command not recognised"),
        }
    }

    fn command(&mut self, req: Request<String>) -> Option<Action> {
        match req {
            Request::Ehlo { .. } => {
                self.ehlo = true;
                self.greeted = true;
                self.tx = None;
                self.ehlo_reply();
                None
            }
            Request::Helo { .. } => {
                self.ehlo = false;
                self.greeted = true;
                self.tx = None;
                let host = self.settings.rules.hostname().to_string();
                self.reply(250, "", &host);
                None
            }
            Request::Mail { from } => self.mail(from.address, from.size),
            Request::Rcpt { to } => self.rcpt(to.address),
            Request::Data => self.data(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, initial_response),
            Request::StartTls => {
                if !self.settings.tls_available || self.tls {
                    return self.error(502, "5.5.1", "STARTTLS is not offered here");
                }
                self.reply(220, "2.0.0", "Ready to start TLS");
                self.state = State::Handshake;
                Some(Action::StartTls)
            }
            Request::Rset => {
                self.tx = None;
                self.reply(250, "2.0.0", "OK");
                None
            }
            Request::Noop { .. } => {
                self.reply(250, "2.0.0", "OK");
                None
            }
            Request::Quit => Some(self.close(221, "2.0.0", "Bye")),
            Request::Vrfy { .. } => {
                self.reply(252, "2.5.0", "Cannot VRFY; send mail and it will be tried");
                None
            }
            Request::Help { .. } => {
                self.reply(
                    214,
                    "2.0.0",
                    "textgate turns mail to NUMBER@domain, or to an address with the numbers in the Subject, into SMS",
                );
                None
            }
            Request::Bdat { .. } => {
                // CHUNKING is not offered, so a well-behaved client never sends BDAT; its
                // data cannot be told from commands, so the session ends rather than guess.
                Some(self.close(
                    502,
                    "5.5.1",
                    "BDAT is not offered here (no CHUNKING); closing",
                ))
            }
            Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.error(502, "5.5.1", "Command not implemented"),
        }
    }

    fn ehlo_reply(&mut self) {
        let host = self.settings.rules.hostname().to_string();
        let mut lines = vec![
            format!("{host} greets you"),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.settings.max_message_bytes),
            "8BITMIME".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
        ];
        if self.settings.tls_available && !self.tls {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        let last = lines.len() - 1;
        for (i, l) in lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            self.out
                .extend_from_slice(format!("250{sep}{l}\r\n").as_bytes());
        }
    }

    fn mail(&mut self, from: String, size: usize) -> Option<Action> {
        if !self.greeted {
            return self.error(503, "5.5.1", "Say EHLO first");
        }
        if self.tx.is_some() {
            return self.error(
                503,
                "5.5.1",
                "A mail transaction is already open; RSET first",
            );
        }
        if size > self.settings.max_message_bytes {
            let max = self.settings.max_message_bytes;
            return self.error(
                552,
                "5.3.4",
                &format!("Message too big: the most taken is {max} bytes"),
            );
        }
        if let Some(owner) = self.authenticated.clone() {
            // The sender is who notices and replies go to: only the user's own address.
            let own = from.is_empty() || owner.emails.iter().any(|e| e.eq_ignore_ascii_case(&from));
            if !own {
                let yours = if owner.emails.is_empty() {
                    "your user has no e-mail address, so send with an empty sender (MAIL FROM:<>) or ask an administrator to set one".to_string()
                } else {
                    format!("use your own address ({})", owner.emails.join(", "))
                };
                self.reply(
                    550,
                    "5.7.1",
                    &format!("<{from}> is not {}'s address: {yours}", owner.name),
                );
                return None;
            }
            self.start_transaction(from, owner);
            return None;
        }
        if !self.peer.trusted {
            let how = if self.auth_offered() {
                "authenticate first (AUTH)"
            } else if self.settings.tls_available {
                "authenticate (STARTTLS, then AUTH)"
            } else {
                "this server takes mail without AUTH only from its trusted networks"
            };
            self.reply(
                530,
                "5.7.0",
                &format!(
                    "Authentication required: mail from your address must be authenticated; {how}"
                ),
            );
            return None;
        }
        if !self.settings.rules.sender_allowed(&from) {
            let how = if self.auth_offered() {
                "authenticate first (AUTH)"
            } else if self.settings.tls_available {
                "authenticate (STARTTLS, then AUTH)"
            } else {
                "ask an administrator to allow your address"
            };
            self.reply(
                550,
                "5.7.1",
                &format!("<{from}> may not send text messages here: {how}"),
            );
            return None;
        }
        self.state = State::Waiting(Pending::Sender(from.clone()));
        Some(Action::FindSender(from))
    }

    fn start_transaction(&mut self, from: String, owner: Owner) {
        self.tx = Some(Transaction {
            from,
            owner,
            numbers: Vec::new(),
            subject_mode: false,
            data: Vec::new(),
        });
        self.reply(250, "2.1.0", "Sender OK");
    }

    fn rcpt(&mut self, to: String) -> Option<Action> {
        let Some(tx) = self.tx.as_mut() else {
            return self.error(503, "5.5.1", "MAIL FROM first");
        };
        match self.settings.rules.target(&to) {
            Ok(Target::Number(n)) => {
                if tx.numbers.contains(&n) {
                    self.reply(250, "2.1.5", "Recipient OK (already given)");
                } else if tx.numbers.len() >= self.settings.max_recipients {
                    let max = self.settings.max_recipients;
                    self.reply(
                        452,
                        "4.5.3",
                        &format!("Too many recipients: at most {max} in one message"),
                    );
                } else {
                    let shown = n.as_str().to_string();
                    tx.numbers.push(n);
                    self.reply(250, "2.1.5", &format!("Recipient OK: {shown}"));
                }
            }
            Ok(Target::Subject) => {
                tx.subject_mode = true;
                self.reply(
                    250,
                    "2.1.5",
                    "Recipient OK: the numbers are read from the Subject",
                );
            }
            Err(TargetError::Relay) => {
                self.reply(
                    550,
                    "5.7.1",
                    &format!("<{to}>: relaying denied; textgate only takes mail for its own SMS domains and addresses"),
                );
            }
            Err(TargetError::BadNumber(e)) => {
                self.reply(550, "5.1.1", &format!("<{to}>: {e}"));
            }
        }
        None
    }

    fn data(&mut self) -> Option<Action> {
        let Some(tx) = self.tx.as_mut() else {
            return self.error(503, "5.5.1", "MAIL FROM first");
        };
        if tx.numbers.is_empty() && !tx.subject_mode {
            return self.error(554, "5.5.1", "No valid recipients");
        }
        tx.data.clear();
        let mut rx = DataReceiver::new();
        // The receiver finds the final "." only at the start of a line; the message starts
        // a line too, which it cannot know, so it is told with a line end it never keeps.
        let mut scratch = Vec::new();
        rx.ingest(&mut b"\r\n".iter(), &mut scratch);
        self.state = State::Data(rx);
        self.reply(354, "", "Send the message; end with <CRLF>.<CRLF>");
        None
    }

    fn end_of_data(&mut self) -> Option<Action> {
        self.state = State::Command(RequestReceiver::default());
        let tx = self.tx.take()?;
        let mail = read_mail(&tx.data);
        let mut to = tx.numbers;
        if tx.subject_mode {
            match subject_numbers(
                mail.subject.as_deref().unwrap_or(""),
                self.settings.rules.country(),
            ) {
                Ok(found) => {
                    for n in found {
                        if !to.contains(&n) {
                            to.push(n);
                        }
                    }
                }
                Err(bad) => {
                    let more = bad.len().saturating_sub(MAX_LISTED);
                    let mut text = bad
                        .into_iter()
                        .take(MAX_LISTED)
                        .collect::<Vec<_>>()
                        .join("; ");
                    if more > 0 {
                        text.push_str(&format!(" (and {more} more)"));
                    }
                    self.reply(550, "5.1.1", &format!("Subject: {text}"));
                    return None;
                }
            }
        }
        if to.len() > self.settings.max_recipients {
            let (n, max) = (to.len(), self.settings.max_recipients);
            self.reply(
                550,
                "5.5.3",
                &format!("Too many recipients: {n}; the most in one message is {max}"),
            );
            return None;
        }
        let max_parts = self.settings.max_parts;
        let body = if self.settings.truncate {
            truncate_to_fit(&mail.text, max_parts)
        } else {
            Body::new(&mail.text, max_parts)
        };
        let body = match body {
            Ok(b) => b,
            Err(BodyError::Empty) => {
                self.reply(
                    554,
                    "5.6.0",
                    "The message has no text to send (after removing the signature and quoted replies)",
                );
                return None;
            }
            Err(e @ BodyError::Nul) => {
                self.reply(554, "5.6.0", &format!("The text cannot be sent: {e}"));
                return None;
            }
            Err(e @ BodyError::TooLong { .. }) => {
                self.reply(
                    552,
                    "5.3.4",
                    &format!("The text is too long for SMS: {e}; shorten it"),
                );
                return None;
            }
        };
        self.state = State::Waiting(Pending::Deliver);
        Some(Action::Deliver(Delivery {
            owner: tx.owner,
            mail_from: tx.from,
            to,
            body,
        }))
    }

    fn auth(&mut self, mechanism: u64, initial: String) -> Option<Action> {
        if !self.auth_offered() {
            return self.error(
                538,
                "5.7.11",
                "Encryption required for authentication: STARTTLS first",
            );
        }
        if !self.ehlo {
            return self.error(503, "5.5.1", "Say EHLO first");
        }
        if self.authenticated.is_some() {
            return self.error(503, "5.5.1", "Already authenticated");
        }
        if self.tx.is_some() {
            return self.error(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
            );
        }
        let initial = initial.trim();
        match mechanism {
            smtp_proto::AUTH_PLAIN if initial.is_empty() => {
                self.reply(334, "", "");
                self.state = State::Sasl(SaslStep::Plain, LineReceiver::new(()));
                None
            }
            smtp_proto::AUTH_PLAIN => self.sasl_plain(initial),
            smtp_proto::AUTH_LOGIN if initial.is_empty() => {
                // base64 "Username:"
                self.reply(334, "", "VXNlcm5hbWU6");
                self.state = State::Sasl(SaslStep::LoginUser, LineReceiver::new(()));
                None
            }
            smtp_proto::AUTH_LOGIN => self.sasl_login_user(initial),
            _ => self.error(
                504,
                "5.5.4",
                "Authentication mechanism not supported: use PLAIN or LOGIN",
            ),
        }
    }

    fn sasl_line(&mut self) -> Option<Action> {
        let State::Sasl(step, rx) =
            std::mem::replace(&mut self.state, State::Command(RequestReceiver::default()))
        else {
            return None;
        };
        let line = String::from_utf8_lossy(&rx.buf).trim().to_string();
        if line == "*" {
            return self.error(501, "5.7.0", "Authentication cancelled");
        }
        match step {
            SaslStep::Plain => self.sasl_plain(&line),
            SaslStep::LoginUser => self.sasl_login_user(&line),
            SaslStep::LoginPassword(username) => match decode(&line) {
                Some(secret) => self.authenticate(username, secret),
                None => self.error(501, "5.5.2", "Not valid base64"),
            },
        }
    }

    /// RFC 4616: `[authzid] NUL authcid NUL passwd`; "=" is an empty response (RFC 4954 §4).
    fn sasl_plain(&mut self, b64: &str) -> Option<Action> {
        let Some(decoded) = (if b64 == "=" {
            Some(String::new())
        } else {
            decode(b64)
        }) else {
            return self.error(501, "5.5.2", "Not valid base64");
        };
        let mut fields = decoded.split('\0');
        let (Some(_authzid), Some(user), Some(pass), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return self.error(
                501,
                "5.5.2",
                "AUTH PLAIN wants authzid NUL user NUL password",
            );
        };
        self.authenticate(user.to_string(), pass.to_string())
    }

    fn sasl_login_user(&mut self, b64: &str) -> Option<Action> {
        match decode(b64) {
            Some(user) => {
                // base64 "Password:"
                self.reply(334, "", "UGFzc3dvcmQ6");
                self.state = State::Sasl(SaslStep::LoginPassword(user), LineReceiver::new(()));
                None
            }
            None => self.error(501, "5.5.2", "Not valid base64"),
        }
    }

    fn authenticate(&mut self, username: String, secret: String) -> Option<Action> {
        self.state = State::Waiting(Pending::Auth);
        Some(Action::Authenticate(Credentials { username, secret }))
    }
}

fn decode(b64: &str) -> Option<String> {
    let bytes = mail_parser::decoders::base64::base64_decode(b64.trim().as_bytes())?;
    String::from_utf8(bytes).ok()
}

/// The reply to a client turned away because the listener has as many connections as it
/// may serve.
pub const BUSY_REPLY: &[u8] = b"421 4.7.0 Too many connections; try again later\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(tls: bool) -> Arc<Settings> {
        let cfg = SmtpConfig {
            domains: vec!["sms.example.com".into()],
            addresses: vec!["textmsg@example.com".into()],
            allowed_senders: vec!["*@example.com".into()],
            max_message_bytes: textgate_core::config::Bytes(4096),
            max_recipients: 3,
            tls_cert: tls.then(|| "cert.pem".into()),
            tls_key: tls.then(|| "key.pem".into()),
            ..SmtpConfig::default()
        };
        Arc::new(Settings::new(&cfg, "US".parse().ok(), 2))
    }

    fn bob() -> Owner {
        Owner {
            id: 7,
            name: "bob".into(),
            emails: vec!["bob@example.com".into()],
        }
    }

    /// A client in the trusted networks (the company's relay), on loopback or not.
    fn trusted(loopback: bool) -> Peer {
        Peer {
            loopback,
            trusted: true,
        }
    }

    /// A client: feeds lines, answers actions the way a store with user bob (password
    /// "pw", e-mail bob@example.com) would, and collects replies and deliveries.
    struct Client {
        s: Session,
        delivered: Vec<Delivery>,
        next_id: i64,
        actions: Vec<Action>,
    }

    impl Client {
        fn new(loopback: bool, tls: bool) -> Client {
            let mut s = Session::new(settings(tls), trusted(loopback));
            let greeting = String::from_utf8(s.take_output()).unwrap();
            assert!(
                greeting.starts_with("220 sms.example.com ESMTP"),
                "{greeting}"
            );
            Client {
                s,
                delivered: Vec::new(),
                next_id: 1,
                actions: Vec::new(),
            }
        }

        fn answer(&mut self, a: Action) -> Option<Answer> {
            self.actions.push(a.clone());
            match a {
                Action::Authenticate(c) => Some(Answer::Authenticated(
                    (c.username == "bob" && c.secret == "pw").then(bob),
                )),
                Action::FindSender(f) => Some(Answer::Sender((f == "bob@example.com").then(bob))),
                Action::Deliver(d) => {
                    let ids: Vec<i64> = (0..d.to.len() as i64).map(|i| self.next_id + i).collect();
                    self.next_id += ids.len() as i64;
                    self.delivered.push(d);
                    Some(Answer::Stored(ids))
                }
                Action::StartTls | Action::Close => None,
            }
        }

        /// Sends bytes; returns the replies they caused.
        fn send(&mut self, bytes: &[u8]) -> String {
            let mut action = self.s.ingest(bytes);
            while let Some(a) = action {
                action = match self.answer(a) {
                    Some(ans) => self.s.resolve(ans),
                    None => None,
                };
            }
            String::from_utf8(self.s.take_output()).unwrap()
        }

        fn line(&mut self, l: &str) -> String {
            self.send(format!("{l}\r\n").as_bytes())
        }
    }

    fn codes(replies: &str) -> Vec<&str> {
        replies
            .lines()
            .filter(|l| l.len() >= 4 && l.as_bytes()[3] == b' ')
            .map(|l| &l[..3])
            .collect()
    }

    #[test]
    fn domain_mode_one_text_per_number() {
        let mut c = Client::new(false, false);
        let ehlo = c.line("EHLO client.example.com");
        assert!(ehlo.contains("250-PIPELINING\r\n"), "{ehlo}");
        assert!(ehlo.contains("250-SIZE 4096\r\n"), "{ehlo}");
        assert!(ehlo.contains("8BITMIME"), "{ehlo}");
        assert!(
            !ehlo.contains("AUTH"),
            "no AUTH on a clear non-loopback connection: {ehlo}"
        );
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        assert!(c
            .line("MAIL FROM:<bob@example.com> BODY=8BITMIME SIZE=100")
            .starts_with("250 2.1.0"));
        assert!(c
            .line("RCPT TO:<+15551234567@sms.example.com>")
            .starts_with("250 2.1.5"));
        assert!(c
            .line("RCPT TO:<5557654321@SMS.EXAMPLE.COM>")
            .starts_with("250 2.1.5"));
        assert!(c.line("DATA").starts_with("354"));
        let r = c.send(b"Subject: ignored\r\n\r\nHello there\r\n..dot stuffed\r\n.\r\n");
        assert!(
            r.starts_with("250 2.0.0 OK: 2 texts stored (id 1, 2)"),
            "{r}"
        );
        let d = &c.delivered[0];
        assert_eq!(d.owner, bob());
        assert_eq!(d.mail_from, "bob@example.com");
        let to: Vec<&str> = d.to.iter().map(|r| r.as_str()).collect();
        assert_eq!(to, ["+15551234567", "+15557654321"]);
        assert_eq!(d.body.text(), "Hello there\n.dot stuffed");
        assert!(c.line("QUIT").starts_with("221"));
        assert!(c.s.is_closed());
    }

    #[test]
    fn pipelined_transaction_in_one_packet() {
        let mut c = Client::new(false, false);
        let r = c.send(
            b"EHLO x\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<15551234567@sms.example.com>\r\nRCPT TO:<nobody@elsewhere.org>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n",
        );
        assert_eq!(
            codes(&r),
            ["250", "250", "250", "550", "354", "250", "221"],
            "{r}"
        );
        assert!(
            r.contains("550 5.7.1 <nobody@elsewhere.org>: relaying denied"),
            "{r}"
        );
        assert_eq!(c.delivered.len(), 1);
        assert_eq!(c.delivered[0].body.text(), "body");
    }

    #[test]
    fn data_split_across_reads_byte_by_byte() {
        let mut c = Client::new(false, false);
        let all = b"EHLO x\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<15551234567@sms.example.com>\r\nDATA\r\nSubject: s\r\n\r\n..leading dot\r\nsecond\r\n.\r\n";
        let mut out = String::new();
        for b in all {
            out.push_str(&c.send(&[*b]));
        }
        assert_eq!(codes(&out), ["250", "250", "250", "354", "250"], "{out}");
        assert_eq!(c.delivered[0].body.text(), ".leading dot\nsecond");
    }

    #[test]
    fn empty_message_ends_at_once() {
        let mut c = Client::new(false, false);
        let r = c.send(b"EHLO x\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<15551234567@sms.example.com>\r\nDATA\r\n.\r\nNOOP\r\n");
        assert_eq!(codes(&r), ["250", "250", "250", "354", "554", "250"], "{r}");
        assert!(r.contains("554 5.6.0"), "{r}");
    }

    #[test]
    fn refusals_at_mail_and_rcpt() {
        let mut c = Client::new(false, false);
        c.line("EHLO x");
        let r = c.line("MAIL FROM:<eve@evil.org>");
        assert!(
            r.starts_with("550 5.7.1 <eve@evil.org> may not send"),
            "{r}"
        );
        // Allowed by pattern, but no user has the address.
        let r = c.line("MAIL FROM:<ghost@example.com>");
        assert!(
            r.starts_with("550 5.7.1 <ghost@example.com> may send, but no textgate user"),
            "{r}"
        );
        let r = c.line("MAIL FROM:<>");
        assert!(r.starts_with("550 5.7.1"), "the null sender: {r}");
        let r = c.line("RCPT TO:<15551234567@sms.example.com>");
        assert!(r.starts_with("503 5.5.1"), "{r}");
        c.line("MAIL FROM:<bob@example.com>");
        let r = c.line("RCPT TO:<15551234567@gmail.com>");
        assert!(r.starts_with("550 5.7.1"), "{r}");
        let r = c.line("RCPT TO:<alice@sms.example.com>");
        assert!(r.starts_with("550 5.1.1 <alice@sms.example.com>: "), "{r}");
        let r = c.line("RCPT TO:<12@sms.example.com>");
        assert!(r.starts_with("550 5.1.1"), "{r}");
        let r = c.line("DATA");
        assert!(r.starts_with("554 5.5.1 No valid recipients"), "{r}");
        for n in ["15550000001", "15550000002", "15550000003"] {
            assert!(c
                .line(&format!("RCPT TO:<{n}@sms.example.com>"))
                .starts_with("250"));
        }
        let r = c.line("RCPT TO:<15550000004@sms.example.com>");
        assert!(r.starts_with("452 4.5.3"), "{r}");
        let r = c.line("MAIL FROM:<bob@example.com>");
        assert!(r.starts_with("503 5.5.1"), "nested MAIL: {r}");
        assert!(c.line("RSET").starts_with("250"));
        let r = c.line("MAIL FROM:<bob@example.com> SIZE=999999");
        assert!(r.starts_with("552 5.3.4"), "{r}");
    }

    #[test]
    fn address_mode_reads_the_subject() {
        let mut c = Client::new(false, false);
        let r = c.send(b"EHLO x\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<TextMsg@example.com>\r\nRCPT TO:<15551234567@sms.example.com>\r\nDATA\r\n");
        assert_eq!(codes(&r), ["250", "250", "250", "250", "354"], "{r}");
        let r = c.send(b"Subject: +15557654321, 15551234567\r\n\r\nMeeting moved\r\n.\r\n");
        assert!(r.starts_with("250 2.0.0 OK: 2 texts"), "{r}");
        let to: Vec<&str> = c.delivered[0].to.iter().map(|r| r.as_str()).collect();
        assert_eq!(to, ["+15551234567", "+15557654321"]);
        // A bad number in the Subject refuses the message with 5.1.1.
        let r = c.send(b"MAIL FROM:<bob@example.com>\r\nRCPT TO:<textmsg@example.com>\r\nDATA\r\nSubject: +15557654321, nonsense\r\n\r\nx\r\n.\r\n");
        assert!(
            r.ends_with("\r\n") && r.contains("550 5.1.1 Subject: \"nonsense\""),
            "{r}"
        );
        // More numbers than max_recipients.
        let r = c.send(b"MAIL FROM:<bob@example.com>\r\nRCPT TO:<textmsg@example.com>\r\nDATA\r\nSubject: +15550000001 +15550000002 +15550000003 +15550000004\r\n\r\nx\r\n.\r\n");
        assert!(r.contains("550 5.5.3 Too many recipients"), "{r}");
        assert_eq!(c.delivered.len(), 1);
    }

    #[test]
    fn oversized_message_and_long_text() {
        let mut c = Client::new(false, false);
        c.send(b"EHLO x\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<15551234567@sms.example.com>\r\nDATA\r\n");
        let mut r = String::new();
        for _ in 0..100 {
            r.push_str(&c.send(&[b'x'; 100]));
            r.push_str(&c.send(b"\r\n"));
        }
        assert_eq!(r, "", "nothing is answered before the final dot");
        let r = c.send(b".\r\n");
        assert!(r.starts_with("552 5.3.4 Message too big"), "{r}");
        // The session goes on.
        let r = c.send(
            b"MAIL FROM:<bob@example.com>\r\nRCPT TO:<15551234567@sms.example.com>\r\nDATA\r\n",
        );
        assert_eq!(codes(&r), ["250", "250", "354"], "{r}");
        // Within SIZE, but more than max_parts (2) SMS parts.
        let body = format!("Subject: x\r\n\r\n{}\r\n.\r\n", "y".repeat(400));
        let r = c.send(body.as_bytes());
        assert!(
            r.starts_with("552 5.3.4 The text is too long for SMS"),
            "{r}"
        );
        assert!(c.delivered.is_empty());
    }

    #[test]
    fn truncation_when_configured() {
        let mut cfg = (*settings(false)).clone();
        cfg.truncate = true;
        let mut c = Client::new(false, false);
        c.s = Session::new(Arc::new(cfg), trusted(false));
        c.s.take_output();
        let body = format!("EHLO x\r\nMAIL FROM:<bob@example.com>\r\nRCPT TO:<15551234567@sms.example.com>\r\nDATA\r\nSubject: x\r\n\r\n{}\r\n.\r\n", "y".repeat(400));
        let r = c.send(body.as_bytes());
        assert!(r.contains("250 2.0.0 OK: 1 text stored"), "{r}");
        assert_eq!(c.delivered[0].body.segments(), 2);
        assert_eq!(c.delivered[0].body.text(), "y".repeat(306));
    }

    #[test]
    fn auth_only_over_tls_or_loopback() {
        // A clear connection from elsewhere: AUTH is neither offered nor accepted.
        let mut c = Client::new(false, true);
        let ehlo = c.line("EHLO x");
        assert!(
            ehlo.contains("STARTTLS") && !ehlo.contains("AUTH"),
            "{ehlo}"
        );
        let r = c.line("AUTH PLAIN AGJvYgBwdw==");
        assert!(r.starts_with("538 5.7.11"), "{r}");
        assert!(c.actions.is_empty(), "no credential was checked");
        let r = c.line("MAIL FROM:<eve@evil.org>");
        assert!(r.contains("STARTTLS, then AUTH"), "{r}");
        // STARTTLS; what was pipelined after it is dropped, and TLS starts afresh.
        let r = c.send(b"STARTTLS\r\nAUTH PLAIN AGJvYgBwdw==\r\n");
        assert_eq!(r, "220 2.0.0 Ready to start TLS\r\n");
        assert_eq!(c.actions.last(), Some(&Action::StartTls));
        c.s.tls_started();
        let r = c.line("AUTH PLAIN AGJvYgBwdw==");
        assert!(r.starts_with("503 5.5.1 Say EHLO"), "{r}");
        let ehlo = c.line("EHLO x");
        assert!(
            ehlo.contains("AUTH PLAIN LOGIN") && !ehlo.contains("STARTTLS"),
            "{ehlo}"
        );
        // "\0bob\0pw"
        let r = c.line("AUTH PLAIN AGJvYgBwdw==");
        assert!(r.starts_with("235 2.7.0"), "{r}");
        // Authenticated, bob may use only his own address (or none) as the envelope sender:
        // notices and replies go there.
        let r = c.line("MAIL FROM:<anyone@anywhere.org>");
        assert!(
            r.starts_with("550 5.7.1") && r.contains("bob@example.com"),
            "{r}"
        );
        let r = c.send(b"MAIL FROM:<Bob@Example.COM>\r\nRCPT TO:<15551234567@sms.example.com>\r\nDATA\r\nSubject: s\r\n\r\nhi\r\n.\r\n");
        assert_eq!(codes(&r), ["250", "250", "354", "250"], "{r}");
        assert_eq!(c.delivered[0].owner, bob());
        let r = c.line("MAIL FROM:<>");
        assert!(
            r.starts_with("250 2.1.0"),
            "an empty sender is always allowed: {r}"
        );
    }

    #[test]
    fn mail_without_auth_is_taken_only_from_trusted_networks() {
        let untrusted = Peer {
            loopback: false,
            trusted: false,
        };
        let mut s = Session::new(settings(true), untrusted);
        s.take_output();
        s.ingest(b"EHLO x\r\n");
        s.take_output();
        // An allowed sender's address, but from anywhere: AUTH is required.
        assert!(
            s.ingest(b"MAIL FROM:<bob@example.com>\r\n").is_none(),
            "no lookup"
        );
        let r = String::from_utf8(s.take_output()).unwrap();
        assert!(
            r.starts_with("530 5.7.0 Authentication required") && r.contains("STARTTLS"),
            "{r}"
        );
        // The sender is looked up from a trusted network; an administrator's address is refused
        // with the reason the store's side gives.
        let mut c = Client::new(false, false);
        c.line("EHLO x");
        c.s.ingest(b"MAIL FROM:<root@example.com>\r\n");
        let r = String::from_utf8(c.s.take_output()).unwrap();
        assert!(r.is_empty(), "waiting for the lookup: {r}");
        c.s.resolve(Answer::SenderRefused("an administrator's address".into()));
        let r = String::from_utf8(c.s.take_output()).unwrap();
        assert!(
            r.starts_with("550 5.7.1 <root@example.com>: an administrator's address"),
            "{r}"
        );
    }

    #[test]
    fn a_locked_out_sign_in_ends_the_session() {
        let mut c = Client::new(true, false);
        c.line("EHLO x");
        assert!(c.s.ingest(b"AUTH PLAIN AGJvYgB4\r\n").is_some());
        let a =
            c.s.resolve(Answer::LockedOut(std::time::Duration::from_secs(600)));
        assert_eq!(a, Some(Action::Close));
        let r = String::from_utf8(c.s.take_output()).unwrap();
        assert!(r.starts_with("421 4.7.0") && r.contains("10 minute"), "{r}");
        assert!(c.s.is_closed());
    }

    #[test]
    fn auth_login_and_failures() {
        let mut c = Client::new(true, false);
        let ehlo = c.line("EHLO x");
        assert!(
            ehlo.contains("AUTH PLAIN LOGIN"),
            "loopback offers AUTH: {ehlo}"
        );
        assert_eq!(c.line("AUTH LOGIN"), "334 VXNlcm5hbWU6\r\n");
        assert_eq!(c.line("Ym9i"), "334 UGFzc3dvcmQ6\r\n");
        assert!(c.line("cHc=").starts_with("235 2.7.0"));
        assert_eq!(
            c.actions[0],
            Action::Authenticate(Credentials {
                username: "bob".into(),
                secret: "pw".into()
            })
        );
        assert!(
            !format!("{:?}", c.actions[0]).contains("pw"),
            "secrets stay out of logs"
        );
        // A second session: LOGIN with an initial response, PLAIN in two steps, cancel,
        // bad base64, then three wrong passwords close it.
        let mut c = Client::new(true, false);
        c.line("EHLO x");
        assert_eq!(c.line("AUTH LOGIN Ym9i"), "334 UGFzc3dvcmQ6\r\n");
        assert!(c.line("*").starts_with("501 5.7.0"));
        assert_eq!(c.line("AUTH PLAIN"), "334 \r\n");
        assert!(c.line("!!!").starts_with("501 5.5.2"));
        assert!(c.line("AUTH CRAM-MD5").starts_with("504 5.5.4"));
        // "\0bob\0wrong"
        assert!(c
            .line("AUTH PLAIN AGJvYgB3cm9uZw==")
            .starts_with("535 5.7.8"));
        assert!(c
            .line("AUTH PLAIN AGJvYgB3cm9uZw==")
            .starts_with("535 5.7.8"));
        let r = c.line("AUTH PLAIN AGJvYgB3cm9uZw==");
        assert!(r.starts_with("535 5.7.8") && r.contains("421 4.7.0"), "{r}");
        assert!(c.s.is_closed());
    }

    #[test]
    fn garbage_gets_errors_then_the_session_gives_up() {
        let mut c = Client::new(false, false);
        let r = c.send(b"\x00\xff\xfe garbage\r\nHELLO\r\n\r\n");
        assert_eq!(codes(&r), ["500", "500", "500"], "{r}");
        // An over-long line, arriving in pieces, is one error, not many.
        let mut r = String::new();
        for _ in 0..10 {
            r.push_str(&c.send(&[b'A'; 1000]));
        }
        r.push_str(&c.send(b" B\r\n"));
        assert_eq!(codes(&r), ["500"], "{r}");
        assert!(r.contains("5.5.2 Line too long"), "{r}");
        // The session still works.
        assert!(c.line("EHLO x").contains("250 "));
        // Endless garbage ends the session.
        let mut r = String::new();
        for _ in 0..30 {
            r.push_str(&c.line("XYZZY"));
            if c.s.is_closed() {
                break;
            }
        }
        assert!(r.contains("421 4.7.0 Too many errors"), "{r}");
        assert!(c.s.is_closed());
        assert_eq!(c.s.ingest(b"NOOP\r\n"), None);
        assert_eq!(c.s.take_output(), b"");
    }

    #[test]
    fn bdat_and_unknown_flows() {
        let mut c = Client::new(false, false);
        assert!(
            c.line("MAIL FROM:<bob@example.com>").starts_with("503"),
            "EHLO first"
        );
        c.line("HELO x");
        assert!(c.line("VRFY bob").starts_with("252"));
        assert!(c.line("NOOP").starts_with("250"));
        assert!(
            c.line("STARTTLS").starts_with("502"),
            "no certificate, no STARTTLS"
        );
        let r = c.line("BDAT 10 LAST");
        assert!(r.starts_with("502"), "{r}");
        assert!(c.s.is_closed());
    }

    /// Whatever the client sends, in whatever pieces: no panic, every reply is a CRLF line
    /// with a three-digit code, and every action asked for is one the client's bytes could
    /// lead to (nothing is delivered without MAIL, RCPT and DATA).
    fn check_replies(out: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        for line in out.split_terminator("\r\n") {
            proptest::prop_assert!(
                line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit),
                "bad reply line {line:?}"
            );
        }
        proptest::prop_assert!(out.is_empty() || out.ends_with("\r\n"));
        Ok(())
    }

    fn command_soup() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(b"EHLO x\r\n".to_vec()),
            Just(b"MAIL FROM:<bob@example.com>\r\n".to_vec()),
            Just(b"RCPT TO:<15551234567@sms.example.com>\r\n".to_vec()),
            Just(b"RCPT TO:<textmsg@example.com>\r\n".to_vec()),
            Just(b"DATA\r\n".to_vec()),
            Just(b"Subject: +15557654321\r\n\r\nhi\r\n".to_vec()),
            Just(b".\r\n".to_vec()),
            Just(b"AUTH PLAIN AGJvYgBwdw==\r\n".to_vec()),
            Just(b"AUTH LOGIN\r\n".to_vec()),
            Just(b"RSET\r\n".to_vec()),
            Just(b"STARTTLS\r\n".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        #[test]
        fn random_input_never_breaks_the_session(
            bytes in proptest::prop_oneof![
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000),
                command_soup(),
            ],
            cut in 1usize..64,
            loopback in proptest::prelude::any::<bool>(),
        ) {
            let mut c = Client::new(loopback, true);
            let mut out = String::new();
            for chunk in bytes.chunks(cut) {
                let mut action = c.s.ingest(chunk);
                while let Some(a) = action {
                    action = match c.answer(a.clone()) {
                        Some(ans) => c.s.resolve(ans),
                        None if a == Action::StartTls => {
                            c.s.tls_started();
                            None
                        }
                        None => None,
                    };
                }
                out.push_str(&String::from_utf8_lossy(&c.s.take_output()));
            }
            check_replies(&out)?;
            for d in &c.delivered {
                proptest::prop_assert!(!d.to.is_empty());
                proptest::prop_assert!(d.to.len() <= 3);
                proptest::prop_assert!(!d.body.text().is_empty());
            }
        }
    }

    #[test]
    fn answers_unavailable_and_timeouts() {
        let mut s = Session::new(settings(false), trusted(false));
        s.take_output();
        let a = s.ingest(b"EHLO x\r\nMAIL FROM:<bob@example.com>\r\nNOOP\r\n");
        assert_eq!(a, Some(Action::FindSender("bob@example.com".into())));
        // The NOOP waits for the answer.
        assert_eq!(codes(&String::from_utf8(s.take_output()).unwrap()), ["250"]);
        assert_eq!(s.resolve(Answer::Unavailable), None);
        let r = String::from_utf8(s.take_output()).unwrap();
        assert_eq!(codes(&r), ["451", "250"], "{r}");
        assert!(!s.in_data());
        assert_eq!(s.timed_out(), Action::Close);
        assert!(String::from_utf8(s.take_output())
            .unwrap()
            .starts_with("421 4.4.2"));
        let mut s = Session::new(settings(false), trusted(false));
        assert_eq!(s.shutting_down(), Action::Close);
        assert!(String::from_utf8(s.take_output())
            .unwrap()
            .contains("421 4.3.2"));
    }
}
