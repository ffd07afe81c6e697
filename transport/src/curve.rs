//! CURVE keys: generation, the key files, allow-lists, and socket setup for
//! servers (the broker) and clients (clients and workers).
//!
//! Keys travel in ZeroMQ's Z85 text form (40 characters for 32 bytes).
//! A **key pair file** holds both halves and must stay private:
//!
//! ```text
//! # Switchboard CURVE key pair
//! public-key = <40 characters>
//! secret-key = <40 characters>
//! ```
//!
//! A **public key file** or an **allow-list** holds public keys only, one per line
//! (blank lines and lines starting with `#` ignored; a key pair file's `public-key =` line counts).

use std::collections::HashSet;
use std::path::Path;

/// Length of a key in bytes.
pub const KEY_BYTES: usize = 32;

/// Why keys could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read key file {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file could not be written (it exists already, or the folder is missing or
    /// not writable).
    #[error("cannot write key file {path}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key is not 40 characters of Z85 decoding to 32 bytes.
    #[error("{what} is not a Z85 CURVE key (40 characters)")]
    Malformed {
        /// Which key (file and line, or variable).
        what: String,
    },
    /// A key pair file lacks one half.
    #[error("{path} has no {missing} line")]
    Incomplete {
        /// The file.
        path: String,
        /// `public-key` or `secret-key`.
        missing: &'static str,
    },
    /// An allow-list file has no key in it.
    #[error("allow-list {path} lists no key: nobody could connect")]
    EmptyAllowList {
        /// The file.
        path: String,
    },
    /// This libzmq was built without CURVE.
    #[error("this libzmq has no CURVE support (Debian's libzmq3-dev has it)")]
    Unsupported,
    /// A socket option could not be set.
    #[error("cannot configure CURVE on the socket")]
    Socket(#[from] zmq::Error),
}

/// A 32-byte CURVE key.
pub type Key = [u8; KEY_BYTES];

/// Decodes a Z85 key; `what` names it in errors.
pub fn decode_key(text: &str, what: &str) -> Result<Key, KeyError> {
    let malformed = || KeyError::Malformed {
        what: what.to_owned(),
    };
    let text = text.trim();
    const Z85: &str =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if text.len() != 40 || !text.chars().all(|c| Z85.contains(c)) {
        return Err(malformed());
    }
    let bytes = zmq::z85_decode(text).map_err(|_| malformed())?;
    bytes.try_into().map_err(|_| malformed())
}

/// Encodes a key in Z85.
pub fn encode_key(key: &Key) -> String {
    zmq::z85_encode(key).expect("32 bytes always encode")
}

/// A public and secret key.
#[derive(Clone)]
pub struct KeyPair {
    /// The public half, shared with peers.
    pub public: Key,
    /// The secret half.
    pub secret: Key,
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "KeyPair {{ public: {}, secret: <hidden> }}",
            encode_key(&self.public)
        )
    }
}

impl KeyPair {
    /// A new random key pair.
    pub fn generate() -> Result<KeyPair, KeyError> {
        if !zmq::has("curve").unwrap_or(false) {
            return Err(KeyError::Unsupported);
        }
        let pair = zmq::CurveKeyPair::new()?;
        Ok(KeyPair {
            public: pair.public_key,
            secret: pair.secret_key,
        })
    }

    /// The key pair file text.
    pub fn to_file_text(&self) -> String {
        format!(
            "# Switchboard CURVE key pair: keep this file secret\npublic-key = {}\nsecret-key = {}\n",
            encode_key(&self.public),
            encode_key(&self.secret)
        )
    }

    /// Parses key pair file text; `path` names it in errors.
    pub fn from_file_text(text: &str, path: &str) -> Result<KeyPair, KeyError> {
        let field = |name: &'static str| -> Result<Key, KeyError> {
            let line = text
                .lines()
                .find_map(|l| l.trim().strip_prefix(name)?.trim().strip_prefix('='))
                .ok_or(KeyError::Incomplete {
                    path: path.to_owned(),
                    missing: name,
                })?;
            decode_key(line, &format!("{name} in {path}"))
        };
        Ok(KeyPair {
            public: field("public-key")?,
            secret: field("secret-key")?,
        })
    }

    /// Reads a key pair file.
    pub fn read(path: &Path) -> Result<KeyPair, KeyError> {
        KeyPair::from_file_text(&read(path)?, &path.display().to_string())
    }
}

fn read(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Parses public keys, one per line; `path` names the source in errors.
pub fn parse_public_keys(text: &str, path: &str) -> Result<HashSet<Key>, KeyError> {
    let mut keys = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        // '#' is a Z85 character, so only whole lines are comments.
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("secret-key") {
            continue;
        }
        let value = line
            .strip_prefix("public-key")
            .and_then(|rest| rest.trim().strip_prefix('='))
            .unwrap_or(line);
        keys.insert(decode_key(value, &format!("{path} line {}", n + 1))?);
    }
    Ok(keys)
}

/// Reads an allow-list file; an empty list is an error (it would lock everyone out).
pub fn read_allow_list(path: &Path) -> Result<HashSet<Key>, KeyError> {
    let name = path.display().to_string();
    let keys = parse_public_keys(&read(path)?, &name)?;
    if keys.is_empty() {
        return Err(KeyError::EmptyAllowList { path: name });
    }
    Ok(keys)
}

/// Reads a public key file (one key; a key pair file works too).
pub fn read_public_key(path: &Path) -> Result<Key, KeyError> {
    let name = path.display().to_string();
    let keys = parse_public_keys(&read(path)?, &name)?;
    match keys.len() {
        1 => Ok(keys.into_iter().next().expect("one key")),
        _ => Err(KeyError::Malformed {
            what: format!("{name} (expected exactly one public key)"),
        }),
    }
}

/// What a client or worker needs to talk CURVE to the broker.
#[derive(Debug, Clone)]
pub struct ClientCurve {
    /// The broker's public key.
    pub server_public: Key,
    /// This peer's own key pair (its public key must be on the broker's allow-list).
    pub keys: KeyPair,
}

impl ClientCurve {
    /// Loads client-side CURVE settings: the broker's public key (a Z85 string, or a
    /// file) and this peer's key pair file. `None` when no broker key is given (plain).
    pub fn load(
        server_key: Option<&str>,
        server_key_file: Option<&Path>,
        key_file: Option<&Path>,
    ) -> Result<Option<ClientCurve>, KeyError> {
        let server_public = match (server_key, server_key_file) {
            (Some(text), _) => decode_key(text, "the broker's public key")?,
            (None, Some(path)) => read_public_key(path)?,
            (None, None) => {
                if key_file.is_some() {
                    return Err(KeyError::Malformed {
                        what: "the broker's public key (missing: needed with a key pair file)"
                            .into(),
                    });
                }
                return Ok(None);
            }
        };
        let Some(key_file) = key_file else {
            return Err(KeyError::Incomplete {
                path: "(no key pair file given)".into(),
                missing: "secret-key",
            });
        };
        Ok(Some(ClientCurve {
            server_public,
            keys: KeyPair::read(key_file)?,
        }))
    }

    /// Writes a new key pair as `<base>.key` (owner-only) and `<base>.pub`; refuses to overwrite.
    pub fn generate_files(
        base: &Path,
    ) -> Result<(KeyPair, std::path::PathBuf, std::path::PathBuf), KeyError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let pair = KeyPair::generate()?;
        let secret_path = base.with_extension("key");
        let public_path = base.with_extension("pub");
        let write = |path: &Path, text: &str, mode: u32| -> Result<(), KeyError> {
            let fail = |source| KeyError::Write {
                path: path.display().to_string(),
                source,
            };
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)
                .map_err(fail)?;
            file.write_all(text.as_bytes()).map_err(fail)
        };
        write(&secret_path, &pair.to_file_text(), 0o600)?;
        write(
            &public_path,
            &format!("{}\n", encode_key(&pair.public)),
            0o644,
        )?;
        Ok((pair, secret_path, public_path))
    }

    /// Sets the CURVE client options on a socket (before `connect`).
    pub fn apply(&self, socket: &zmq::Socket) -> Result<(), KeyError> {
        if !zmq::has("curve").unwrap_or(false) {
            return Err(KeyError::Unsupported);
        }
        socket.set_curve_serverkey(&self.server_public)?;
        socket.set_curve_publickey(&self.keys.public)?;
        socket.set_curve_secretkey(&self.keys.secret)?;
        Ok(())
    }
}

/// Makes a socket a CURVE server with `keys`, authenticating peers in ZAP `domain` (before `bind`).
pub fn apply_server(socket: &zmq::Socket, keys: &KeyPair, domain: &str) -> Result<(), KeyError> {
    if !zmq::has("curve").unwrap_or(false) {
        return Err(KeyError::Unsupported);
    }
    socket.set_zap_domain(domain)?;
    socket.set_curve_server(true)?;
    socket.set_curve_secretkey(&keys.secret)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_pair_file_round_trips_and_hides_the_secret_in_debug() {
        let pair = KeyPair::generate().unwrap();
        let text = pair.to_file_text();
        let back = KeyPair::from_file_text(&text, "mem").unwrap();
        assert_eq!((back.public, back.secret), (pair.public, pair.secret));
        assert!(!format!("{pair:?}").contains(&encode_key(&pair.secret)));
        // The pair file also works as a public key list (its secret line is skipped).
        let keys = parse_public_keys(&text, "mem").unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys.contains(&pair.public));
    }

    #[test]
    fn malformed_keys_and_files_are_typed_errors() {
        assert!(matches!(
            decode_key("short", "k"),
            Err(KeyError::Malformed { .. })
        ));
        assert!(matches!(
            decode_key(&"~".repeat(40), "k"),
            Err(KeyError::Malformed { .. })
        ));
        let err = KeyPair::from_file_text("public-key = x\n", "f").unwrap_err();
        assert!(matches!(
            err,
            KeyError::Malformed { .. } | KeyError::Incomplete { .. }
        ));
        let pair = KeyPair::generate().unwrap();
        let only_public = format!("public-key = {}\n", encode_key(&pair.public));
        let err = KeyPair::from_file_text(&only_public, "f").unwrap_err();
        assert!(matches!(
            err,
            KeyError::Incomplete {
                missing: "secret-key",
                ..
            }
        ));
        let list = format!("# clients\n{}\n\n  # x\n", encode_key(&pair.public));
        assert_eq!(parse_public_keys(&list, "l").unwrap().len(), 1);
        assert!(parse_public_keys("not a key\n", "l").is_err());
    }
}
