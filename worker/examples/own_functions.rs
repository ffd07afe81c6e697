//! A worker hosting your own functions, deployed like the `worker` binary: settings from
//! `SWITCHBOARD_*` variables, logs on stderr, graceful stop on SIGTERM or SIGINT.
//!
//! ```text
//! SWITCHBOARD_BROKER=tcp://127.0.0.1:5556 cargo run -p switchboard-worker --example own_functions
//! ```

use switchboard_worker::{Kwargs, Registry};

#[derive(serde::Deserialize)]
struct Resize {
    width: u32,
    height: u32,
}

fn main() -> Result<(), switchboard_worker::WorkerError> {
    let mut math = Registry::new();
    math.register("add", |a: i64, b: i64| a + b)
        .doc("Adds two integers.")
        .inline(); // quick: runs on the socket thread
    math.register("div", |a: f64, b: f64| {
        if b == 0.0 {
            Err("division by zero") // reaches the caller as FUNCTION_ERROR
        } else {
            Ok(a / b)
        }
    });
    let mut registry = Registry::new();
    registry.mount("math", math); // math.add, math.div
    registry.register("area", |Kwargs(r): Kwargs<Resize>| r.width * r.height);
    switchboard_worker::serve(registry)
}
