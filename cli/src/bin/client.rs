//! `client` binary: call functions from the shell, list and describe them, run batches.

use std::process::ExitCode;
use std::time::Duration;
use switchboard_protocol::limits::MAX_BATCH_CALLS;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{json, Value as Json};
use switchboard_cli::curve_args::CurveArgs;
use switchboard_cli::json::{parse_arg, to_json, to_msgpack};
use switchboard_client::{CallError, Client, ClientConfig, ErrorCode, RemoteError, Value};
use switchboard_protocol::{FunctionListing, WorkerListing};
use switchboard_transport::curve::{encode_key, ClientCurve};

const EXAMPLES: &str = "\
Examples:
  client call add 2 3                        positional arguments are JSON
  client call upper hello                    a bare word is a string
  client call greet name=ada greeting=hi     key=value is a keyword argument
  client call echo '{\"$bin\": \"AAEC\"}'        binary data as base64
  client --timeout-ms 500 call sleep_ms 1000
  client list
  client describe add
  client workers
  client health --worker worker-1            exit 0 if that worker is connected
  client keygen keys/alice                   CURVE key pair: keys/alice.key, keys/alice.pub
  client batch calls.json                    [{\"function\": \"add\", \"args\": [1, 2]}, ...]
  client --json call nope                    errors as JSON on stdout

Exit codes:
  0  success
  1  the function failed (FUNCTION_ERROR)
  2  bad command line or input file
  3  the call was refused as sent (BAD_ARGUMENTS, BAD_REQUEST, PAYLOAD_TOO_LARGE)
  4  the call was not delivered (UNKNOWN_FUNCTION, TIMEOUT, OVERLOADED, WORKER_LOST,
     SHUTTING_DOWN) or the connection failed
  5  some calls of a batch failed";

/// Switchboard command-line client: call functions hosted by workers.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXAMPLES)]
struct Args {
    /// The broker's frontend endpoint.
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_ENDPOINT",
        default_value_t = ClientConfig::default().endpoint
    )]
    endpoint: String,
    /// How long to wait for a result, in milliseconds (at least 1).
    #[arg(
        long,
        global = true,
        env = "SWITCHBOARD_TIMEOUT_MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    timeout_ms: u64,
    /// Print results and errors as one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    curve: CurveArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call a function. Each argument is JSON (a bare word is a string);
    /// `key=value` passes a keyword argument. Negative numbers are arguments.
    #[command(allow_negative_numbers = true)]
    Call {
        /// The function's name.
        function: String,
        /// Positional JSON values and `key=value` keyword arguments.
        args: Vec<String>,
        /// Also print how the call went (time queued, time running, attempts, worker) on
        /// stderr.
        #[arg(long, short)]
        verbose: bool,
    },
    /// List the functions connected workers host.
    List,
    /// Show one function's signature, description and workers.
    Describe {
        /// The function's name.
        function: String,
    },
    /// List the connected workers.
    Workers,
    /// Exit 0 if the broker answers (system.ping), or with --worker, if that worker is
    /// connected to it. For container health checks.
    Health {
        /// The name of a worker that must be connected.
        #[arg(long)]
        worker: Option<String>,
    },
    /// Generate a CURVE key pair: writes NAME.key (secret, owner-only) and NAME.pub.
    Keygen {
        /// Path and base name of the two files.
        name: std::path::PathBuf,
    },
    /// Run a batch of calls from a JSON file (`-` for stdin): a list of
    /// `{"function": ..., "args": [...], "kwargs": {...}}`.
    Batch {
        /// The file with the calls.
        file: String,
    },
}

/// Writes a line on stdout. A reader that went away (`client … | head`) is not an error:
/// the rest of the output is dropped.
fn say(text: impl std::fmt::Display) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// An error as the user reads it: code and message for a wire error, else the message
/// with the reasons behind it.
fn describe(error: &CallError) -> String {
    match error.remote() {
        Some(remote) => remote.to_string(),
        None => error.message(),
    }
}

/// How a command ended, mapped to an exit code.
enum Outcome {
    Success,
    Failed(u8),
}

fn main() -> ExitCode {
    switchboard_transport::process::init_logging("warn");
    let args = Args::parse();
    let json_output = args.json;
    match run(args) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failed(code)) => ExitCode::from(code),
        Err(error) => {
            if json_output {
                say(format!(
                    "{}",
                    json!({ "error": { "code": "CLIENT", "message": format!("{error:#}") } })
                ));
            } else {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<Outcome> {
    if let Command::Keygen { name } = &args.command {
        let (pair, secret, public) = ClientCurve::generate_files(name)?;
        say(format!("public key: {}", encode_key(&pair.public)));
        say(format!(
            "wrote {} (key pair: keep it secret) and {}",
            secret.display(),
            public.display()
        ));
        return Ok(Outcome::Success);
    }
    let mut config = ClientConfig::new(&args.endpoint);
    config.default_timeout = Duration::from_millis(args.timeout_ms);
    config.curve = args.curve.load()?;
    let client = Client::with_config(config)?;
    let json_output = args.json;
    match args.command {
        Command::Call {
            function,
            args,
            verbose,
        } => {
            let (positional, keywords) = split_args(&args)?;
            let mut request = client.request(&function).args(positional).kwargs(keywords);
            if verbose {
                request = request.timings();
            }
            let result: Result<Value, CallError> = match request.send() {
                Ok(pending) => pending.wait_timed().map(|(value, timings)| {
                    if let Some(t) = timings.filter(|_| verbose) {
                        let ran = t
                            .run_us
                            .map(|us| format!(" (the function itself: {us} µs)"))
                            .unwrap_or_default();
                        eprintln!(
                            "queued {} µs, running {} µs{ran}, attempts {}, worker {}",
                            t.queued_us,
                            t.running_us,
                            t.attempts,
                            if t.worker.is_empty() {
                                "(unnamed)"
                            } else {
                                &t.worker
                            }
                        );
                    }
                    value
                }),
                Err(error) => Err(error),
            };
            Ok(report(result.map(|v| to_json(&v)), json_output, |v| {
                v.to_string()
            }))
        }
        Command::List => {
            let result: Result<Vec<FunctionListing>, CallError> =
                client.call("system.functions", ());
            Ok(report(
                result.map(|list| listing_json(&list)),
                json_output,
                |list| {
                    let rows = list.as_array().cloned().unwrap_or_default();
                    let text = |f: &Json, key: &str| f[key].as_str().unwrap_or_default().to_owned();
                    let width = rows
                        .iter()
                        .map(|f| text(f, "signature").len())
                        .max()
                        .unwrap_or(0);
                    rows.iter()
                        .map(|f| {
                            let signature = text(f, "signature");
                            let doc = text(f, "doc");
                            format!("{signature:<width$}  {} worker(s)  {doc}", f["workers"])
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                },
            ))
        }
        Command::Describe { function } => {
            let result: Result<FunctionListing, CallError> =
                client.call("system.describe", (&function,));
            Ok(report(
                result.map(|f| listing_json(&[f])[0].clone()),
                json_output,
                |f| {
                    format!(
                        "{}\n  {}\n  hosted by {} worker(s); {} running, {} queued",
                        f["signature"].as_str().unwrap_or(""),
                        f["doc"].as_str().unwrap_or(""),
                        f["workers"],
                        f["running"],
                        f["queued"]
                    )
                },
            ))
        }
        Command::Workers => {
            let result: Result<Vec<WorkerListing>, CallError> = client.call("system.workers", ());
            let result = result.map(|list| serde_json::to_value(list).unwrap_or_default());
            Ok(report(result, json_output, |list| {
                list.as_array()
                    .into_iter()
                    .flatten()
                    .map(|w| {
                        format!(
                            "{:<24} {} running of {}  {} functions{}",
                            w["name"].as_str().unwrap_or(""),
                            w["running"],
                            w["capacity"],
                            w["functions"],
                            if w["draining"] == true {
                                "  (leaving)"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }))
        }
        Command::Health { worker } => {
            let result = match worker {
                None => client.call::<String>("system.ping", ()).map(Json::from),
                Some(name) => client
                    .call::<Vec<WorkerListing>>("system.workers", ())
                    .and_then(|list| {
                        if list.iter().any(|w| w.name == name && !w.draining) {
                            Ok(Json::from("connected"))
                        } else {
                            Err(CallError::from(RemoteError::new(
                                ErrorCode::WorkerLost,
                                format!("worker '{name}' is not connected to the broker"),
                            )))
                        }
                    }),
            };
            Ok(report(result, json_output, |v| {
                v.as_str().unwrap_or_default().to_owned()
            }))
        }
        Command::Batch { file } => batch(&client, &file, json_output),
        Command::Keygen { .. } => unreachable!("handled above"),
    }
}

fn listing_json(list: &[FunctionListing]) -> Json {
    Json::Array(
        list.iter()
            .map(|f| {
                json!({
                    "name": f.name, "signature": f.signature, "doc": f.doc,
                    "workers": f.workers, "running": f.running, "queued": f.queued,
                })
            })
            .collect(),
    )
}

/// Prints a result (or error) and returns the exit outcome.
fn report(
    result: Result<Json, CallError>,
    json_output: bool,
    human: impl Fn(&Json) -> String,
) -> Outcome {
    match result {
        Ok(value) => {
            if json_output {
                say(format!("{}", json!({ "result": value })));
            } else {
                say(human(&value));
            }
            Outcome::Success
        }
        Err(error) => {
            if json_output {
                say(format!("{}", error_json(&error)));
            } else {
                eprintln!("error: {}", describe(&error));
            }
            Outcome::Failed(exit_code(&error))
        }
    }
}

fn error_json(error: &CallError) -> Json {
    let code = error.code().map_or("CLIENT", |c| c.as_str());
    json!({ "error": { "code": code, "message": error.message() } })
}

fn exit_code(error: &CallError) -> u8 {
    match error {
        CallError::Function(_) => 1,
        CallError::Rejected(_) | CallError::Encode(_) | CallError::Decode(_) => 3,
        CallError::Broker(_) | CallError::Timeout(_) | CallError::Transport(_) => 4,
    }
}

fn batch(client: &Client, file: &str, json_output: bool) -> anyhow::Result<Outcome> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the batch from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    let calls: Vec<Json> =
        serde_json::from_str(&text).context("the batch file must be a JSON list")?;
    if calls.is_empty() || calls.len() > MAX_BATCH_CALLS {
        anyhow::bail!(
            "the batch has {} calls: give 1 to {MAX_BATCH_CALLS}",
            calls.len()
        );
    }
    let mut batch = client.batch();
    for (i, call) in calls.iter().enumerate() {
        let function = call["function"]
            .as_str()
            .with_context(|| format!("call {}: \"function\" must be a string", i + 1))?;
        let args = match &call["args"] {
            Json::Null => Value::Array(Vec::new()),
            args @ Json::Array(_) => to_msgpack(args)?,
            _ => anyhow::bail!("call {}: \"args\" must be a list", i + 1),
        };
        let kwargs = match &call["kwargs"] {
            Json::Null => Value::Map(Vec::new()),
            kwargs @ Json::Object(_) => to_msgpack(kwargs)?,
            _ => anyhow::bail!("call {}: \"kwargs\" must be an object", i + 1),
        };
        batch = batch.call_with(function, args, kwargs);
    }
    let replies = match batch.wait() {
        Ok(replies) => replies,
        Err(error) => return Ok(report(Err(error), json_output, |_| String::new())),
    };
    let mut failed = 0;
    let mut results = Vec::new();
    for (call, reply) in calls.iter().zip(&replies) {
        let outcome = reply.decode::<Value>();
        failed += usize::from(outcome.is_err());
        match (&outcome, json_output) {
            (Ok(value), false) => say(format!(
                "{}: {}",
                call["function"].as_str().unwrap_or(""),
                to_json(value)
            )),
            (Err(error), false) => say(format!(
                "{}: error: {}",
                call["function"].as_str().unwrap_or(""),
                describe(error)
            )),
            (Ok(value), true) => results.push(json!({ "result": to_json(value) })),
            (Err(error), true) => results.push(error_json(error)),
        }
    }
    if json_output {
        say(format!("{}", json!({ "result": results })));
    }
    Ok(if failed == 0 {
        Outcome::Success
    } else {
        Outcome::Failed(5)
    })
}

/// Splits command-line arguments into positional values and `key=value` keyword arguments.
fn split_args(args: &[String]) -> anyhow::Result<(Vec<Value>, Value)> {
    let mut positional = Vec::new();
    let mut keywords = Vec::new();
    for arg in args {
        match arg.split_once('=') {
            Some((key, value)) if is_identifier(key) => {
                keywords.push((Value::from(key), to_msgpack(&parse_number(value)?)?));
            }
            _ => positional.push(to_msgpack(&parse_number(arg)?)?),
        }
    }
    Ok((positional, Value::Map(keywords)))
}

/// [`parse_arg`], refusing an integer that no 64-bit integer holds (JSON would make it a
/// float the user never typed).
fn parse_number(text: &str) -> anyhow::Result<Json> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    if integer && text.parse::<i64>().is_err() && text.parse::<u64>().is_err() {
        anyhow::bail!(
            "{text} does not fit a 64-bit integer ({} to {}); quote it to pass a string",
            i64::MIN,
            u64::MAX
        );
    }
    Ok(parse_arg(text))
}

fn is_identifier(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
