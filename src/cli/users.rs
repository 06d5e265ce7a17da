//! `chaff users add|passwd|token|remove|list`: manage the users file of the HTTP
//! listener (`[users] file`; see `chaff_milter::users`).
//!
//! The file is changed under a lock and replaced atomically with mode 0600; the
//! running service reads it again within a second. Passwords are read from the
//! terminal without echo (twice), or with `--password-stdin` from the first line
//! of standard input; they are stored only as Argon2id hashes. A token is shown
//! once, when it is made, and stored only as its SHA-256.

use super::{CliError, load_service_config};
use chaff_milter::users::{self, Role, UserEntry, UsersFile};
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `chaff users`.
#[derive(clap::Args)]
pub struct UsersArgs {
    /// The configuration file naming the users file (`file` in `[users]`).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The users file, overriding the configuration.
    #[arg(long, global = true)]
    pub file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub action: UsersAction,
}

/// `chaff users` subcommands.
#[derive(clap::Subcommand)]
pub enum UsersAction {
    /// Add a user.
    Add {
        /// The user's name (letters, digits, `. _ - @ +`).
        name: String,
        /// What the user may do: read, scan (scan with the User header, learn) or
        /// admin.
        #[arg(long)]
        role: Role,
        /// Also make an API token (shown once).
        #[arg(long)]
        token: bool,
        /// Read the password from the first line of standard input.
        #[arg(long, conflicts_with = "no_password")]
        password_stdin: bool,
        /// No password: the user authenticates with the token only (needs --token).
        #[arg(long, requires = "token")]
        no_password: bool,
    },
    /// Change a user's password.
    Passwd {
        /// The user's name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Make a new API token for a user (shown once; it replaces the old one), or
    /// revoke it.
    Token {
        /// The user's name.
        name: String,
        /// Remove the user's token instead.
        #[arg(long)]
        revoke: bool,
    },
    /// Remove a user.
    Remove {
        /// The user's name.
        name: String,
    },
    /// List the users: name, role, whether they have a password and a token.
    List,
}

/// Reads a new password: from standard input's first line, or from the terminal
/// twice without echo.
fn read_password(from_stdin: bool) -> Result<String, CliError> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        if !std::io::stdin().is_terminal() {
            return Err("no terminal to ask for the password: give --password-stdin".into());
        }
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password again: ")?;
        if first != again {
            return Err("the passwords differ".into());
        }
        first
    };
    users::check_new_password(&password)?;
    Ok(password)
}

/// Runs one `chaff users` subcommand.
pub fn run(args: UsersArgs) -> Result<ExitCode, CliError> {
    let path = match args.file {
        Some(f) => f,
        None => load_service_config(args.config.as_deref())?
            .users
            .file
            .ok_or("no users file: give --file PATH, or --config with `file` in [users]")?,
    };
    match args.action {
        UsersAction::Add {
            name,
            role,
            token,
            password_stdin,
            no_password,
        } => {
            users::check_name(&name)?;
            let password = if no_password {
                None
            } else {
                Some(users::hash_password(&read_password(password_stdin)?)?)
            };
            let made = if token {
                Some(users::new_token()?)
            } else {
                None
            };
            UsersFile::edit(&path, |f| {
                f.add(
                    &name,
                    UserEntry {
                        role,
                        password,
                        token: made.as_ref().map(|(_, hash)| hash.clone()),
                    },
                )
            })?;
            eprintln!("chaff: added user `{name}` ({role}) to {}", path.display());
            if let Some((token, _)) = made {
                eprintln!("chaff: the token (shown only now; keep it secret):");
                println!("{token}");
            }
        }
        UsersAction::Passwd {
            name,
            password_stdin,
        } => {
            // Checked before asking, so a mistyped name does not waste a password.
            if !UsersFile::load(&path)?.users.contains_key(&name) {
                return Err(format!("no user `{name}`").into());
            }
            let hash = users::hash_password(&read_password(password_stdin)?)?;
            UsersFile::edit(&path, |f| {
                f.user_mut(&name)?.password = Some(hash);
                Ok(())
            })?;
            eprintln!("chaff: password of `{name}` changed");
        }
        UsersAction::Token { name, revoke } => {
            if revoke {
                UsersFile::edit(&path, |f| {
                    f.user_mut(&name)?.token = None;
                    Ok(())
                })?;
                eprintln!("chaff: token of `{name}` revoked");
            } else {
                let (token, hash) = users::new_token()?;
                UsersFile::edit(&path, |f| {
                    f.user_mut(&name)?.token = Some(hash);
                    Ok(())
                })?;
                eprintln!("chaff: new token of `{name}` (shown only now; keep it secret):");
                println!("{token}");
            }
        }
        UsersAction::Remove { name } => {
            UsersFile::edit(&path, |f| f.remove(&name).map(|_| ()))?;
            eprintln!("chaff: removed user `{name}`");
        }
        UsersAction::List => {
            let file = UsersFile::load(&path)?;
            for (name, u) in &file.users {
                println!(
                    "{name}\t{}\tpassword {}\ttoken {}",
                    u.role,
                    if u.password.is_some() { "yes" } else { "no" },
                    if u.token.is_some() { "yes" } else { "no" },
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
