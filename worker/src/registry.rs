//! The function registry: Rust functions registered by name, callable with a request body.
//!
//! ```
//! use switchboard_worker::{Kwargs, Registry};
//! #[derive(serde::Deserialize)]
//! struct Greet { name: String }
//! let mut registry = Registry::new();
//! registry.register("add", |a: i64, b: i64| a + b).doc("adds two integers");
//! registry.register_fallible("div", |a: f64, b: f64| {
//!     if b == 0.0 { Err("division by zero") } else { Ok(a / b) }
//! });
//! registry.register("greet", |Kwargs(g): Kwargs<Greet>| format!("hello {}", g.name));
//! assert_eq!(registry.functions().len(), 3);
//! ```

use std::collections::HashMap;
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use switchboard_protocol::args::{
    decode_args, explain_mismatch, struct_fields, ArgsError, ArgsShape,
};
use switchboard_protocol::client::function_name;
use switchboard_protocol::codec::{decode_reply, encode_error, encode_result};
use switchboard_protocol::{ErrorCode, FunctionInfo, RemoteError, Value, RESERVED_PREFIX};

/// Marks a function whose single parameter is a struct filled from keyword
/// arguments (or from positional ones, in field order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kwargs<T>(pub T);

type Invoke = dyn Fn(&str, &[u8]) -> Result<Vec<u8>, RemoteError> + Send + Sync;

/// One registered function, type-erased: takes a request body, returns a reply body.
pub struct Function {
    info: FunctionInfo,
    invoke: Arc<Invoke>,
    /// Set once an inline call of it ran too long: its calls go to the executors since.
    demoted: std::sync::atomic::AtomicBool,
    /// Each call runs in a child process the worker can kill (see `isolation`).
    isolated: bool,
}

impl Function {
    /// Whether calls run on the worker's socket thread instead of an executor: it was
    /// registered `.inline()` and no call of it has been too slow for that.
    pub fn is_inline(&self) -> bool {
        self.info.inline
            && !self.isolated
            && !self.demoted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether each call runs in a child process ([`Registration::isolated`]).
    pub fn is_isolated(&self) -> bool {
        self.isolated
    }

    /// Sends its calls to the executors from now on (an inline call took too long and
    /// held up the socket thread, heartbeats included).
    pub fn demote(&self) {
        self.demoted
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// What the worker announces about this function.
    pub fn info(&self) -> &FunctionInfo {
        &self.info
    }

    /// Runs the function on a request body and returns the reply body.
    ///
    /// Never panics: argument errors become BAD_ARGUMENTS, a returned error or a
    /// panic becomes FUNCTION_ERROR.
    pub fn call(&self, body: &[u8]) -> Vec<u8> {
        match catch_unwind(AssertUnwindSafe(|| (self.invoke)(&self.info.name, body))) {
            Ok(Ok(reply)) => reply,
            Ok(Err(error)) => encode_error(&error),
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic payload".into());
                encode_error(&RemoteError::new(
                    ErrorCode::FunctionError,
                    format!("{} panicked: {reason}", self.info.name),
                ))
            }
        }
    }
}

/// Functions a worker hosts, by name.
#[derive(Clone, Default)]
pub struct Registry {
    functions: HashMap<String, Arc<Function>>,
    order: Vec<String>,
}

/// Returned by `register`: adds a doc line or overrides the signature.
pub struct Registration<'r> {
    function: &'r mut Arc<Function>,
}

impl Registration<'_> {
    fn info_mut(&mut self) -> &mut FunctionInfo {
        // Just created by `register` behind `&mut Registry`: nobody else holds it yet.
        &mut Arc::get_mut(self.function)
            .expect("a fresh registration is not shared")
            .info
    }

    /// Sets the one-line description announced to the broker.
    pub fn doc(mut self, doc: &str) -> Self {
        self.info_mut().doc = doc.to_owned();
        self
    }

    /// Runs calls on the worker's socket thread, skipping the hand-off to an executor
    /// thread (two thread wake-ups per call). Only for functions that finish in
    /// microseconds and never block: while one runs, the worker neither heartbeats nor
    /// takes other calls.
    pub fn inline(mut self) -> Self {
        self.info_mut().inline = true;
        self
    }

    /// Declares that running the function twice for one call is harmless, so a
    /// call whose worker dies may be re-dispatched to another worker.
    pub fn retry_safe(mut self) -> Self {
        self.info_mut().retry_safe = true;
        self
    }

    /// Hedges calls of this function (it must also be [`Registration::retry_safe`]): when a
    /// call has run `after` without an answer, the broker sends a second attempt to
    /// another free worker hosting it; the first answer wins and the other is cancelled.
    pub fn hedge_after(mut self, after: std::time::Duration) -> Self {
        self.info_mut().hedge_ms = after.as_millis().clamp(1, u128::from(u64::MAX)) as u64;
        self
    }

    /// Runs each call in a child process that the worker kills when the call is
    /// cancelled (deadline passed, caller cancelled, hedge lost) or crashes: a function
    /// that hangs or ignores its cancellation token cannot hold a slot, and one that
    /// aborts fails its call, not the worker. The child is this program started again with
    /// the same arguments; it goes as far as [`Worker::run`](crate::Worker::run), which runs
    /// the one call and exits, so the program must build the same registry on every run
    /// and do nothing before `run` that must not happen twice. Costs a process start per
    /// call: for long or risky functions.
    pub fn isolated(self) -> Self {
        Arc::get_mut(self.function)
            .expect("a fresh registration is not shared")
            .isolated = true;
        self
    }

    /// Replaces the signature derived from the Rust types.
    pub fn signature(mut self, signature: &str) -> Self {
        self.info_mut().signature = signature.to_owned();
        self
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers a function whose return value is the result.
    ///
    /// Parameters are positional (`|a: i64, b: String|`, up to 8), or one
    /// [`Kwargs<T>`] whose fields are keyword names. Registering a name again
    /// replaces the earlier function.
    ///
    /// A function that returns a `Result` is treated as [`Registry::register_fallible`]
    /// would: `Ok` is the result and `Err` reaches the caller as FUNCTION_ERROR (its text
    /// when it serializes as a string), never as a successful `{"Err": …}`.
    pub fn register<F, Args, R>(&mut self, name: &str, function: F) -> Registration<'_>
    where
        F: IntoFunction<Args, R>,
    {
        let (params, invoke) = function.into_invoke();
        let result = std::any::type_name::<R>();
        match ok_type(result) {
            Some(ok) => self.insert(name, params, ok, unwrap_result(invoke)),
            None => self.insert(name, params, result, invoke),
        }
    }

    /// Registers a function returning `Result<T, E>`: `Ok` is the result, `Err`
    /// reaches the caller as FUNCTION_ERROR with `E`'s `Display` text.
    pub fn register_fallible<F, Args, T, E>(&mut self, name: &str, function: F) -> Registration<'_>
    where
        F: IntoFallibleFunction<Args, T, E>,
    {
        let (params, invoke) = function.into_invoke();
        self.insert(name, params, std::any::type_name::<T>(), invoke)
    }

    fn insert(
        &mut self,
        name: &str,
        params: String,
        result: &str,
        invoke: Arc<Invoke>,
    ) -> Registration<'_> {
        let info = FunctionInfo {
            name: name.to_owned(),
            doc: String::new(),
            signature: format!("{name}({params}) -> {}", short_type_name(result)),
            retry_safe: false,
            inline: false,
            hedge_ms: 0,
        };
        if !self.functions.contains_key(name) {
            self.order.push(name.to_owned());
        }
        let function = Arc::new(Function {
            info,
            invoke,
            demoted: Default::default(),
            isolated: false,
        });
        let slot = match self.functions.entry(name.to_owned()) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.insert(function);
                e.into_mut()
            }
            std::collections::hash_map::Entry::Vacant(e) => e.insert(function),
        };
        Registration { function: slot }
    }

    /// Adds every function of `other` under `prefix.` (like xmlrpc's
    /// `register_instance`): mounting a registry holding `add` at `math`
    /// hosts `math.add`.
    pub fn mount(&mut self, prefix: &str, other: Registry) -> &mut Registry {
        for name in &other.order {
            let function = &other.functions[name];
            let full = format!("{prefix}.{name}");
            let signature = match function.info.signature.strip_prefix(name.as_str()) {
                Some(rest) => format!("{full}{rest}"),
                None => function.info.signature.clone(),
            };
            let info = FunctionInfo {
                name: full.clone(),
                signature,
                ..function.info.clone()
            };
            if !self.functions.contains_key(&full) {
                self.order.push(full.clone());
            }
            let invoke = Arc::clone(&function.invoke);
            self.functions.insert(
                full,
                Arc::new(Function {
                    info,
                    invoke,
                    demoted: Default::default(),
                    isolated: function.isolated,
                }),
            );
        }
        self
    }

    /// Names that the broker would refuse, with the reason: empty, too long,
    /// control characters, or in the reserved `system.` namespace.
    pub fn invalid_names(&self) -> Vec<(String, String)> {
        self.order
            .iter()
            .filter_map(|name| {
                let problem = match function_name(name.as_bytes()) {
                    Err(e) => e.to_string(),
                    Ok(_) if name.starts_with(RESERVED_PREFIX) => {
                        format!("names under '{RESERVED_PREFIX}' are reserved for the broker")
                    }
                    Ok(_) => return None,
                };
                Some((name.clone(), problem))
            })
            .collect()
    }

    /// Looks a function up by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Function>> {
        self.functions.get(name)
    }

    /// What the worker announces in READY, in registration order.
    pub fn functions(&self) -> Vec<FunctionInfo> {
        self.order
            .iter()
            .filter_map(|n| self.functions.get(n))
            .map(|f| f.info.clone())
            .collect()
    }
}

/// A Rust function or closure that can be registered with [`Registry::register`].
pub trait IntoFunction<Args, R>: Send + Sync + 'static {
    /// Erases the function's types.
    #[doc(hidden)]
    fn into_invoke(self) -> (String, Arc<Invoke>);
}

/// A function returning `Result`, for [`Registry::register_fallible`].
pub trait IntoFallibleFunction<Args, T, E>: Send + Sync + 'static {
    /// Erases the function's types.
    #[doc(hidden)]
    fn into_invoke(self) -> (String, Arc<Invoke>);
}

fn decode<A: DeserializeOwned>(
    name: &str,
    body: &[u8],
    shape: ArgsShape,
    params: &[&str],
) -> Result<A, RemoteError> {
    decode_args(body, shape).map_err(|e| match e {
        ArgsError::Malformed(m) => RemoteError::new(
            ErrorCode::BadRequest,
            format!("{name}: malformed request body: {m}"),
        ),
        ArgsError::Mismatch(m) => RemoteError::new(
            ErrorCode::BadArguments,
            format!("{name}: {}", explain_mismatch(&m, params)),
        ),
    })
}

fn encode_value<T: Serialize>(name: &str, value: &T) -> Result<Vec<u8>, RemoteError> {
    encode_result(value).map_err(|e| {
        RemoteError::new(
            ErrorCode::FunctionError,
            format!("{name}: cannot encode result: {}", e.with_causes()),
        )
    })
}

fn encode_outcome<T: Serialize, E: Display>(
    name: &str,
    outcome: Result<T, E>,
) -> Result<Vec<u8>, RemoteError> {
    match outcome {
        Ok(value) => encode_value(name, &value),
        Err(e) => Err(RemoteError::new(ErrorCode::FunctionError, e.to_string())),
    }
}

/// The `T` of a `Result<T, E>` type name; `None` for any other type.
fn ok_type(type_name: &str) -> Option<&str> {
    let inner = type_name
        .strip_prefix("core::result::Result<")
        .or_else(|| type_name.strip_prefix("std::result::Result<"))?
        .strip_suffix('>')?;
    // The comma between T and E is the first one outside any brackets.
    let mut depth = 0i32;
    for (at, c) in inner.char_indices() {
        match c {
            '<' | '(' | '[' => depth += 1,
            '>' | ')' | ']' => depth -= 1,
            ',' if depth == 0 => return Some(inner[..at].trim()),
            _ => {}
        }
    }
    None
}

/// Turns the reply of a function returning `Result` — `{"result": {"Ok": v}}` or
/// `{"result": {"Err": e}}`, serde's form of a `Result` — into `{"result": v}` or a
/// FUNCTION_ERROR whose message is `e` (a string as it is, anything else as text).
/// (The reply is decoded and encoded once more: only functions registered this way pay.)
fn unwrap_result(invoke: Arc<Invoke>) -> Arc<Invoke> {
    Arc::new(move |name: &str, body: &[u8]| {
        let reply = invoke(name, body)?;
        match serde_result(&reply) {
            Some(Ok(value)) => encode_value(name, &value),
            Some(Err(Value::String(text))) => Err(RemoteError::new(
                ErrorCode::FunctionError,
                text.into_str().unwrap_or_default(),
            )),
            Some(Err(other)) => Err(RemoteError::new(
                ErrorCode::FunctionError,
                other.to_string(),
            )),
            None => Ok(reply),
        }
    })
}

/// The `Ok`/`Err` value of a reply whose result is serde's form of a `Result`.
fn serde_result(reply: &[u8]) -> Option<Result<Value, Value>> {
    let Ok(Ok(Value::Map(mut entries))) = decode_reply::<Value>(reply) else {
        return None;
    };
    let (tag, value) = entries.pop().filter(|_| entries.is_empty())?;
    match tag.as_str()? {
        "Ok" => Some(Ok(value)),
        "Err" => Some(Err(value)),
        _ => None,
    }
}

/// `alloc::string::String` → `String`, `core::option::Option<i64>` → `Option<i64>`.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    let mut word = String::new();
    for c in full.chars().chain(std::iter::once('\0')) {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
        } else {
            out.push_str(word.rsplit("::").next().unwrap_or(&word));
            word.clear();
            if c != '\0' {
                out.push(c);
            }
        }
    }
    out
}

macro_rules! impl_positional {
    ($arity:expr; $($arg:ident),*) => {
        impl<Func, R, $($arg,)*> IntoFunction<($($arg,)*), R> for Func
        where
            Func: Fn($($arg),*) -> R + Send + Sync + 'static,
            R: Serialize,
            $($arg: DeserializeOwned + 'static,)*
        {
            #[allow(non_snake_case)]
            fn into_invoke(self) -> (String, Arc<Invoke>) {
                let invoke = erase::<($($arg,)*)>(
                    ArgsShape::Positional { arity: $arity },
                    vec![$(std::any::type_name::<$arg>()),*],
                    move |name, ($($arg,)*)| encode_value(name, &self($($arg),*)),
                );
                (positional_params(&[$(std::any::type_name::<$arg>()),*]), invoke)
            }
        }

        impl<Func, T, E, $($arg,)*> IntoFallibleFunction<($($arg,)*), T, E> for Func
        where
            Func: Fn($($arg),*) -> Result<T, E> + Send + Sync + 'static,
            T: Serialize,
            E: Display,
            $($arg: DeserializeOwned + 'static,)*
        {
            #[allow(non_snake_case)]
            fn into_invoke(self) -> (String, Arc<Invoke>) {
                let invoke = erase::<($($arg,)*)>(
                    ArgsShape::Positional { arity: $arity },
                    vec![$(std::any::type_name::<$arg>()),*],
                    move |name, ($($arg,)*)| encode_outcome(name, self($($arg),*)),
                );
                (positional_params(&[$(std::any::type_name::<$arg>()),*]), invoke)
            }
        }
    };
}

fn positional_params(types: &[&str]) -> String {
    types
        .iter()
        .map(|t| short_type_name(t))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Wraps a typed function as "name and request body in, reply body out". `params` are its
/// positional parameters' type names, for error messages (empty for keyword functions).
fn erase<A: DeserializeOwned + 'static>(
    shape: ArgsShape,
    params: Vec<&'static str>,
    run: impl Fn(&str, A) -> Result<Vec<u8>, RemoteError> + Send + Sync + 'static,
) -> Arc<Invoke> {
    Arc::new(move |name: &str, body: &[u8]| run(name, decode::<A>(name, body, shape, &params)?))
}

fn keyword_shape<T: DeserializeOwned>() -> (ArgsShape, String) {
    let fields = struct_fields::<T>();
    let params = match fields {
        Some(fields) => fields.join(", "),
        None => format!("**{}", short_type_name(std::any::type_name::<T>())),
    };
    (ArgsShape::Keyword { fields }, params)
}

impl_positional!(0;);
impl_positional!(1; A1);
impl_positional!(2; A1, A2);
impl_positional!(3; A1, A2, A3);
impl_positional!(4; A1, A2, A3, A4);
impl_positional!(5; A1, A2, A3, A4, A5);
impl_positional!(6; A1, A2, A3, A4, A5, A6);
impl_positional!(7; A1, A2, A3, A4, A5, A6, A7);
impl_positional!(8; A1, A2, A3, A4, A5, A6, A7, A8);

impl<Func, R, T> IntoFunction<Kwargs<T>, R> for Func
where
    Func: Fn(Kwargs<T>) -> R + Send + Sync + 'static,
    R: Serialize,
    T: DeserializeOwned + 'static,
{
    fn into_invoke(self) -> (String, Arc<Invoke>) {
        let (shape, params) = keyword_shape::<T>();
        let invoke = erase::<T>(shape, Vec::new(), move |name, args| {
            encode_value(name, &self(Kwargs(args)))
        });
        (params, invoke)
    }
}

impl<Func, T, E, K> IntoFallibleFunction<Kwargs<K>, T, E> for Func
where
    Func: Fn(Kwargs<K>) -> Result<T, E> + Send + Sync + 'static,
    T: Serialize,
    E: Display,
    K: DeserializeOwned + 'static,
{
    fn into_invoke(self) -> (String, Arc<Invoke>) {
        let (shape, params) = keyword_shape::<K>();
        let invoke = erase::<K>(shape, Vec::new(), move |name, args| {
            encode_outcome(name, self(Kwargs(args)))
        });
        (params, invoke)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use switchboard_protocol::codec::{decode_reply, encode_request_body};

    #[derive(Deserialize)]
    struct Greet {
        name: String,
        #[serde(default)]
        greeting: Option<String>,
    }

    fn registry() -> Registry {
        let mut registry = Registry::new();
        registry.register("add", |a: i64, b: i64| a + b).doc("adds");
        registry.register("nothing", || ());
        registry.register_fallible("div", |a: f64, b: f64| {
            if b == 0.0 {
                Err("division by zero")
            } else {
                Ok(a / b)
            }
        });
        registry.register("greet", |Kwargs(g): Kwargs<Greet>| {
            format!("{} {}", g.greeting.as_deref().unwrap_or("hello"), g.name)
        });
        registry.register("boom", |_: i64| -> i64 { panic!("kaboom") });
        registry
    }

    fn call<T: DeserializeOwned>(name: &str, body: Vec<u8>) -> Result<T, RemoteError> {
        let reply = registry().get(name).unwrap().call(&body);
        decode_reply(&reply).unwrap()
    }

    #[test]
    fn positional_call_returns_the_result() {
        let body = encode_request_body(&(2, 40), &()).unwrap();
        assert_eq!(call::<i64>("add", body), Ok(42));
        assert_eq!(
            call::<()>("nothing", encode_request_body(&(), &()).unwrap()),
            Ok(())
        );
    }

    #[test]
    fn register_with_a_result_means_fallible() {
        #[derive(serde::Serialize)]
        struct Problem {
            port: u16,
        }
        let mut registry = Registry::new();
        registry.register("parse", |text: String| {
            text.parse::<u16>().map_err(|e| e.to_string())
        });
        registry.register("check", |port: u16| -> Result<Vec<u16>, Problem> {
            if port == 0 {
                Err(Problem { port })
            } else {
                Ok(vec![port])
            }
        });
        let run = |name: &str, body: Vec<u8>| {
            let reply = registry.get(name).unwrap().call(&body);
            decode_reply::<switchboard_protocol::Value>(&reply).unwrap()
        };
        let ok = run("parse", encode_request_body(&("80",), &()).unwrap());
        assert_eq!(ok, Ok(switchboard_protocol::Value::from(80)));
        let err = run("parse", encode_request_body(&("bad port",), &()).unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::FunctionError);
        assert_eq!(err.message, "invalid digit found in string");
        let err = run("check", encode_request_body(&(0,), &()).unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::FunctionError);
        assert!(err.message.contains("port"), "{}", err.message);
        let signatures: Vec<String> = registry
            .functions()
            .into_iter()
            .map(|f| f.signature)
            .collect();
        assert_eq!(
            signatures,
            ["parse(String) -> u16", "check(u16) -> Vec<u16>"]
        );
    }

    #[test]
    fn err_becomes_function_error_with_its_message() {
        let err = call::<f64>("div", encode_request_body(&(1.0, 0.0), &()).unwrap()).unwrap_err();
        assert_eq!(
            err,
            RemoteError::new(ErrorCode::FunctionError, "division by zero")
        );
    }

    #[test]
    fn bad_arguments_name_the_function() {
        let err = call::<i64>("add", encode_request_body(&(1,), &()).unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadArguments);
        assert_eq!(
            err.message,
            "add: takes 2 positional arguments but 1 was given"
        );
    }

    #[test]
    fn kwargs_fill_a_struct_with_defaults() {
        let kwargs: HashMap<&str, &str> = [("name", "ada")].into();
        let body = encode_request_body(&(), &kwargs).unwrap();
        assert_eq!(call::<String>("greet", body), Ok("hello ada".into()));
        let body = encode_request_body(&("bob", "hi"), &()).unwrap();
        assert_eq!(call::<String>("greet", body), Ok("hi bob".into()));
    }

    #[test]
    fn panic_is_caught_and_reported() {
        let err = call::<i64>("boom", encode_request_body(&(1,), &()).unwrap()).unwrap_err();
        assert_eq!(err.code, ErrorCode::FunctionError);
        assert!(err.message.contains("kaboom"), "{}", err.message);
    }

    #[test]
    fn mounted_functions_answer_under_their_prefix() {
        let mut outer = Registry::new();
        outer.mount("math", registry());
        let add = outer.get("math.add").expect("mounted");
        assert_eq!(add.info().signature, "math.add(i64, i64) -> i64");
        let reply = add.call(&encode_request_body(&(1,), &()).unwrap());
        let err = decode_reply::<i64>(&reply).unwrap().unwrap_err();
        assert_eq!(
            err.message,
            "math.add: takes 2 positional arguments but 1 was given"
        );
        assert!(outer.get("add").is_none());
    }

    #[test]
    fn inline_flag_is_kept_and_survives_mounting() {
        let mut inner = Registry::new();
        inner.register("fast", |a: i64| a).inline();
        inner.register("slow", |a: i64| a);
        assert!(inner.get("fast").unwrap().is_inline());
        assert!(!inner.get("slow").unwrap().is_inline());
        let mut outer = Registry::new();
        outer.mount("ns", inner);
        assert!(outer.get("ns.fast").unwrap().is_inline());
        assert!(!outer.get("ns.slow").unwrap().is_inline());
    }

    #[test]
    fn reserved_and_malformed_names_are_reported() {
        let mut registry = registry();
        registry.register("system.evil", || ());
        registry.register("", || ());
        let names: Vec<_> = registry
            .invalid_names()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["system.evil", ""]);
    }

    #[test]
    fn signatures_use_short_type_names() {
        let infos = registry().functions();
        assert_eq!(infos[0].signature, "add(i64, i64) -> i64");
        assert_eq!(infos[0].doc, "adds");
        let greet = infos.iter().find(|f| f.name == "greet").unwrap();
        assert_eq!(greet.signature, "greet(name, greeting) -> String");
        assert_eq!(
            short_type_name("core::option::Option<alloc::string::String>"),
            "Option<String>"
        );
    }
}
