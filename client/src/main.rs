//! `client` binary: call a function from the shell and print its result as JSON.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchboard_client::json::{parse_arg, to_json, to_msgpack};
use switchboard_client::{CallError, Client, ClientConfig, Value};

/// Switchboard command-line client.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    after_help = "Examples:\n  client call add 2 3\n  client call upper hello\n  client call greet name=ada greeting=hi\n  client --timeout-ms 500 call sleep_ms 1000"
)]
struct Args {
    /// The broker's frontend endpoint.
    #[arg(
        long,
        env = "SWITCHBOARD_ENDPOINT",
        default_value = "tcp://127.0.0.1:5555"
    )]
    endpoint: String,
    /// How long to wait for a result, in milliseconds.
    #[arg(long, env = "SWITCHBOARD_TIMEOUT_MS", default_value_t = 10_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call a function. Each argument is JSON (a bare word is taken as a string);
    /// `key=value` passes a keyword argument.
    Call {
        /// The function's name.
        function: String,
        /// Arguments: positional JSON values and `key=value` keyword arguments.
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    switchboard_protocol::process::init_logging("warn");
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = ClientConfig::new(&args.endpoint);
    config.default_timeout = Duration::from_millis(args.timeout_ms);
    let client = Client::with_config(config)?;
    match args.command {
        Command::Call { function, args } => {
            let (positional, keywords) = split_args(&args);
            let result: Result<Value, CallError> = client
                .request(&function)
                .args(positional)
                .kwargs(keywords)
                .call();
            let value = result?;
            println!("{}", to_json(&value));
        }
    }
    Ok(())
}

/// Splits command-line arguments into positional values and `key=value` keyword arguments.
fn split_args(args: &[String]) -> (Vec<Value>, Value) {
    let mut positional = Vec::new();
    let mut keywords = Vec::new();
    for arg in args {
        match arg.split_once('=') {
            Some((key, value)) if is_identifier(key) => {
                keywords.push((Value::from(key), to_msgpack(&parse_arg(value))));
            }
            _ => positional.push(to_msgpack(&parse_arg(arg))),
        }
    }
    (positional, Value::Map(keywords))
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
