//! The `textgate` binary: command-line parsing and wiring (docs/operations.md). Each subcommand
//! lives in its own module; the work is done by the library crates.
//!
//! - [`serve`]: the central server (HTTP API, dispatcher, devices).
//! - [`admin`]: `user add` and `apikey create`, straight on the database.
//! - [`client`]: `send` and `job submit`, through a running server's HTTP API.
//! - [`backup`]: `backup` and `restore` of a SQLite store.
//! - [`port`]: a remote port server.
//! - `check`: validates a config file.

mod admin;
mod backup;
mod client;
mod port;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The request path allocates many small, short-lived buffers from several threads;
// mimalloc's thread-local free lists cut the allocator's share of CPU from about a fifth
// (glibc malloc, measured with perf in bench/run) to a few percent.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use textgate_core::config::Config;

#[derive(Parser)]
#[command(
    name = "textgate",
    version,
    about = "A self-hosted enterprise SMS gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the central server: HTTP API, dispatcher and devices.
    Serve {
        /// The config file; without one, the embedded defaults (SQLite in ./textgate-data,
        /// HTTP on 127.0.0.1:8080, one loopback device).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage API keys.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Send a text through a running server.
    Send {
        /// The destination number.
        #[arg(long)]
        to: String,
        /// The text.
        #[arg(long)]
        body: String,
        /// The sender id.
        #[arg(long)]
        from: Option<String>,
        /// The server's base URL (default: $TEXTGATE_SERVER or http://127.0.0.1:8080).
        #[arg(long)]
        server: Option<String>,
        /// An API key (default: $TEXTGATE_API_KEY).
        #[arg(long)]
        api_key: Option<String>,
        /// Follow the message until it reaches a final status, printing each change.
        #[arg(long)]
        wait: bool,
    },
    /// Bulk jobs through a running server.
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Run a remote port server: its own devices, linked to the central server.
    Port {
        /// The port server's config file (server, name, token, data_dir, [[device]]).
        #[arg(long)]
        config: PathBuf,
        /// Print the link's state and what it holds, as the running port server last wrote it.
        #[arg(long)]
        status: bool,
        /// Check the file and exit non-zero with the reason if it is not valid.
        #[arg(long)]
        check: bool,
    },
    /// Copy the SQLite store to a file while servers go on sending (docs/backup.md).
    ///
    /// The copy is the store at one instant, written beside FILE, checked and synced, then
    /// renamed to FILE.
    Backup {
        /// The backup file to write.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Put a backup in place of the SQLite store; refused while a server runs on it
    /// (docs/backup.md).
    ///
    /// FILE, made by `textgate backup`, is checked first; the store it replaces is kept beside
    /// it as `NAME.before-restore-TIME`.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Check a config file and exit non-zero with the reason if it is not valid.
    Check {
        /// The config file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum JobCommand {
    /// Upload a CSV file as a job and show its progress until it is done; exits non-zero if
    /// the job fails, is cancelled, or some of its messages are not delivered.
    Submit {
        /// The CSV file: a header row with a `to` column, and a `body` column unless
        /// --template is given.
        file: PathBuf,
        /// The text, with {{column}} placeholders.
        #[arg(long)]
        template: Option<String>,
        /// The sender id.
        #[arg(long)]
        from: Option<String>,
        /// A name for the job.
        #[arg(long)]
        name: Option<String>,
        /// Messages a second at most for this job.
        #[arg(long)]
        rate: Option<f64>,
        /// Drop rows whose number came earlier in the file.
        #[arg(long)]
        dedupe: bool,
        /// Store nothing if any row is bad.
        #[arg(long)]
        all_or_nothing: bool,
        /// The server's base URL (default: $TEXTGATE_SERVER or http://127.0.0.1:8080).
        #[arg(long)]
        server: Option<String>,
        /// An API key (default: $TEXTGATE_API_KEY).
        #[arg(long)]
        api_key: Option<String>,
        /// Upload and print the answer, without following the job.
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        /// The login name.
        name: String,
        /// admin or user.
        #[arg(long, default_value = "user")]
        role: String,
        /// The user's e-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List the users.
    List {
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Disable a user (they cannot sign in, their API keys and e-mail address stop working;
    /// nothing of theirs is removed), or enable them again with --enable.
    Disable {
        /// The login name.
        name: String,
        /// Enable the user instead.
        #[arg(long)]
        enable: bool,
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Set a user's password (generated and printed once, unless read from standard input);
    /// their web sessions are signed out.
    Passwd {
        /// The login name.
        name: String,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create an API key for a user; prints the key once, on its own line.
    Create {
        /// The user.
        #[arg(long)]
        user: String,
        /// Also make a secret that signs the status callbacks of messages sent with this
        /// key; printed once, on the line after the key.
        #[arg(long)]
        webhook_secret: bool,
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// List API keys (never the keys themselves): id, user, label, created, last used, revoked.
    List {
        /// Only this user's.
        #[arg(long)]
        user: Option<String>,
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Revoke an API key by its id (see `apikey list`); running servers refuse it within
    /// seconds.
    Revoke {
        /// The key's id.
        id: i64,
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Reads and parses a config file, with the process's environment over it: the one place
/// the configuration meets the file system and the environment.
fn read_config(path: &std::path::Path) -> Result<Config, textgate_core::config::ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        textgate_core::config::ConfigError::new(
            path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )
    })?;
    Config::parse(&text, &|k| std::env::var(k).ok())
}

/// The config from a file, or the embedded defaults; checked either way.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let cfg = match path {
        Some(p) => read_config(p)?,
        None => {
            let mut c = Config::embedded_defaults();
            c.apply_env(&|k| std::env::var(k).ok());
            c
        }
    };
    cfg.check()?;
    Ok(cfg)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config } => match read_config(&config)
            .and_then(|c| c.check().map(|_| c))
            .map_err(|e| e.to_string())
            // The STARTTLS certificate and key must also be usable, not just present.
            .and_then(|c| {
                textgate_smtp::server::tls_acceptor(&c)
                    .map(|_| c)
                    .map_err(|e| e.to_string())
            }) {
            Ok(c) => {
                println!(
                    "{}: valid ({} device(s), {} route(s), database {})",
                    config.display(),
                    c.devices.len(),
                    c.routes.len(),
                    textgate_core::config::redact_url(&c.server.database_url)
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                return ExitCode::from(2);
            }
        },
        Command::Port {
            config,
            status,
            check,
        } if status || check => match port::load(&config) {
            Ok(c) if status => port::status(&c),
            Ok(c) => {
                println!(
                    "{}: valid (port server {}, {} device(s))",
                    config.display(),
                    c.name,
                    c.devices.len()
                );
                Ok(())
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                return ExitCode::from(2);
            }
        },
        // Files and SQLite only: no runtime needed.
        Command::Backup {
            file,
            force,
            config,
        } => load_config(config.as_deref()).and_then(|c| backup::backup(&c, &file, force)),
        Command::Restore { file, config } => load_config(config.as_deref())
            .and_then(|c| backup::restore(&c, config.as_deref(), &file)),
        command => runtime().and_then(|rt| rt.block_on(run(command))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("textgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => serve::run(load_config(config.as_deref())?).await,
        Command::Port { config, .. } => port::run(port::load(&config)?).await,
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    role,
                    email,
                    password_stdin,
                    config,
                },
        } => {
            admin::user_add(
                load_config(config.as_deref())?,
                &name,
                &role,
                email,
                password_stdin,
            )
            .await
        }
        Command::User {
            command:
                UserCommand::Passwd {
                    name,
                    password_stdin,
                    config,
                },
        } => admin::user_passwd(load_config(config.as_deref())?, &name, password_stdin).await,
        Command::User {
            command: UserCommand::List { config },
        } => admin::user_list(load_config(config.as_deref())?).await,
        Command::User {
            command:
                UserCommand::Disable {
                    name,
                    enable,
                    config,
                },
        } => admin::user_disable(load_config(config.as_deref())?, &name, enable).await,
        Command::Apikey {
            command:
                ApikeyCommand::Create {
                    user,
                    webhook_secret,
                    config,
                },
        } => admin::apikey_create(load_config(config.as_deref())?, &user, webhook_secret).await,
        Command::Apikey {
            command: ApikeyCommand::List { user, config },
        } => admin::apikey_list(load_config(config.as_deref())?, user.as_deref()).await,
        Command::Apikey {
            command: ApikeyCommand::Revoke { id, config },
        } => admin::apikey_revoke(load_config(config.as_deref())?, id).await,
        Command::Send {
            to,
            body,
            from,
            server,
            api_key,
            wait,
        } => {
            client::send(client::SendArgs {
                to,
                body,
                from,
                server,
                api_key,
                wait,
            })
            .await
        }
        Command::Job {
            command:
                JobCommand::Submit {
                    file,
                    template,
                    from,
                    name,
                    rate,
                    dedupe,
                    all_or_nothing,
                    server,
                    api_key,
                    no_wait,
                },
        } => {
            client::submit(client::SubmitArgs {
                file,
                template,
                from,
                name,
                rate,
                dedupe,
                all_or_nothing,
                server,
                api_key,
                wait: !no_wait,
            })
            .await
        }
        Command::Check { .. } | Command::Backup { .. } | Command::Restore { .. } => Ok(()),
    }
}
