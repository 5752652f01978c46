//! The `textgate` binary: command-line parsing and wiring (docs/operations.md). Each subcommand
//! lives in its own module; the work is done by the library crates.
//!
//! - [`serve`]: the central server (HTTP API, dispatcher, devices); [`notify`]: its
//!   readiness, stop and watchdog notifications to systemd.
//! - [`admin`]: `user add` and `apikey create`, straight on the database.
//! - [`client`]: `send` and `job submit`, through a running server's HTTP API.
//! - [`backup`]: `backup` and `restore` of a SQLite store.
//! - [`port`]: a remote port server.
//! - `check` (or `config check`): validates a config file; `config example` prints the full
//!   commented configuration, [`EXAMPLE`].
//! - `version`, `status` (through a running server's HTTP API), `completions`, `man`: for
//!   operators (docs/operations.md).

mod admin;
mod backup;
mod client;
mod notify;
mod port;
mod serve;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

// The request path allocates many small, short-lived buffers from several threads;
// mimalloc's thread-local free lists cut the allocator's share of CPU from about a fifth
// (glibc malloc, measured with perf in bench/run) to a few percent.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use textgate_core::config::Config;

/// Every section and key of the configuration, commented, with its default: what
/// `textgate config example` prints, and the file to install as /etc/textgate/textgate.toml.
/// The e2e tests hold it to docs/configuration.md and to `check`.
const EXAMPLE: &str = include_str!("../textgate.example.toml");

#[derive(Parser)]
#[command(
    name = "textgate",
    version,
    about = "A self-hosted enterprise SMS gateway",
    long_about = "A self-hosted enterprise SMS gateway: texts from applications (HTTP API), CSV \
                  jobs, the web UI and e-mail go out through SMPP accounts, GSM modems and remote \
                  port servers; incoming texts reach inboxes, webhooks and e-mail by inbound \
                  rules.\n\nThe configuration is one TOML file given with --config \
                  (`textgate config example` prints a commented one); `textgate serve` without \
                  one runs on the embedded defaults. TEXTGATE_LOG sets the log filter \
                  (for example info or textgate=debug). The documentation is in the docs \
                  folder of the distribution."
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
    /// Print this build's version and the schema versions it migrates databases to; with
    /// --config, also that database's schema version (read without migrating it).
    Version {
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
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
    /// Ask a running server how it is: version, uptime, store, devices, queue (needs an
    /// administrator's API key).
    Status {
        /// The server's base URL (default: $TEXTGATE_SERVER or http://127.0.0.1:8080).
        #[arg(long)]
        server: Option<String>,
        /// An administrator's API key (default: $TEXTGATE_API_KEY).
        #[arg(long)]
        api_key: Option<String>,
        /// Print the server's answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff); with --dir, write one page per subcommand there.
    Man {
        /// Write textgate.1 and a textgate-SUBCOMMAND.1 page for each subcommand into this
        /// folder instead.
        #[arg(long)]
        dir: Option<PathBuf>,
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
    /// The configuration file: an example to start from, and its check.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the full commented configuration: every section and key with its default, ready
    /// for /etc/textgate/textgate.toml.
    Example,
    /// Check a config file, as `textgate check` does.
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
    /// nothing of theirs is removed); `user enable` undoes it.
    Disable {
        /// The login name.
        name: String,
        /// Enable the user instead: the older spelling of `user enable`, kept for scripts.
        #[arg(long, hide = true)]
        enable: bool,
        /// The config file (for the database).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Enable a disabled user again: they can sign in, and their API keys and e-mail address
    /// work again.
    Enable {
        /// The login name.
        name: String,
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
fn read_config(path: &Path) -> Result<Config, textgate_core::config::ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        textgate_core::config::ConfigError::new(
            path.display().to_string(),
            format!("cannot read the config file: {e}"),
        )
    })?;
    Config::parse(&text, &|k| std::env::var(k).ok())
}

/// The config from a file, or the embedded defaults; checked either way.
fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
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

/// `textgate version [--config FILE]`.
async fn version(config: Option<&std::path::Path>) -> anyhow::Result<()> {
    use textgate_store::Store;
    println!("textgate {}", env!("CARGO_PKG_VERSION"));
    println!(
        "schema: SQLite {}, PostgreSQL {}",
        Store::schema_for("sqlite://"),
        Store::schema_for("postgres://")
    );
    let Some(path) = config else {
        return Ok(());
    };
    let url = load_config(Some(path))?.server.database_url;
    let shown = textgate_core::config::redact_url(&url);
    let known = Store::schema_for(&url);
    match Store::schema_of(&url).await? {
        None => println!("database {shown}: not created yet (`textgate serve` creates it at schema {known})"),
        Some(at) if at == known => println!("database {shown}: schema {at} (current)"),
        Some(at) if at < known => println!(
            "database {shown}: schema {at}; the next `textgate serve` migrates it to {known}"
        ),
        Some(at) => anyhow::bail!(
            "database {shown}: schema {at}, newer than this textgate knows ({known}); run the newer textgate that upgraded it"
        ),
    }
    Ok(())
}

/// `textgate check --config FILE`: exit 0 with a summary, or 2 with the bad key and why.
fn check(config: &Path) -> ExitCode {
    let checked = read_config(config)
        .and_then(|c| c.check().map(|_| c))
        .map_err(|e| e.to_string())
        // The STARTTLS certificate and key must also be usable, not just present.
        .and_then(|c| {
            textgate_smtp::server::tls_acceptor(&c)
                .map(|_| c)
                .map_err(|e| e.to_string())
        });
    match checked {
        Ok(c) => {
            println!(
                "{}: valid ({} device(s), {} route(s), database {})",
                config.display(),
                c.devices.len(),
                c.routes.len(),
                textgate_core::config::redact_url(&c.server.database_url)
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            ExitCode::from(2)
        }
    }
}

/// Writes `text` to standard output. A reader that stops early (`textgate man | head`)
/// is not a failure.
fn print_all(text: &[u8]) -> anyhow::Result<()> {
    match std::io::stdout().lock().write_all(text) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check { config }
        | Command::Config {
            command: ConfigCommand::Check { config },
        } => return check(&config),
        Command::Config {
            command: ConfigCommand::Example,
        } => print_all(EXAMPLE.as_bytes()),
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
        Command::Completions { shell } => {
            // Into memory first: generate() panics when it cannot write (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "textgate", &mut script);
            print_all(&script)
        }
        Command::Man { dir } => man(dir.as_deref()),
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

/// `textgate man`: the man page from the command line's definition, so the two never differ.
fn man(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("cannot write the man pages into {}", dir.display()))
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page)?;
            print_all(&page)
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
        Command::User {
            command: UserCommand::Enable { name, config },
        } => admin::user_disable(load_config(config.as_deref())?, &name, true).await,
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
        Command::Version { config } => version(config.as_deref()).await,
        Command::Status {
            server,
            api_key,
            json,
        } => client::status(server, api_key, json).await,
        // Answered in `main`, without a runtime.
        Command::Check { .. }
        | Command::Config { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Backup { .. }
        | Command::Restore { .. } => Ok(()),
    }
}
