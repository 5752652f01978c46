//! End-to-end tests: the real `textgate` binary, started as a subprocess, spoken to over real
//! HTTP (and SMTP, with Python's smtplib as the client). One test binary (modules below) so it links once; run it with
//! `cargo test -p textgate --test e2e`.
//!
//! PostgreSQL tests need a server at 127.0.0.1:5432 with a database `test` that user
//! `postgres` may create schemas in (`TEXTGATE_TEST_POSTGRES` overrides the URL).

mod api;
mod audit;
mod backup;
mod bad_input;
mod callbacks;
mod cli;
mod contacts;
mod durability;
mod helpers;
mod http_limits;
mod idempotency;
mod inbound;
mod jobs;
mod keys;
mod mailer;
mod modem;
mod monitoring;
mod nodes;
mod ops;
mod package;
mod port;
mod postgres;
mod quota;
mod retention;
mod routing;
mod smpp;
mod smtp;
mod systemd;
mod users;
mod web;
