//! Pure parsers for flag values: `k=v,..` lists, sizes such as `8GiB`, durations, addresses.
//! Errors are one-line messages; clap adds the flag name in front.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};

use drover_api::rest::parse_duration_ms;

/// `a=1,b=2` (repeatable: every occurrence adds) into a map. A value may hold `=`, not `,`.
pub fn kv_list(items: &[String], flag: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in items.iter().flat_map(|s| s.split(',')) {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("--{flag}: '{part}' is not KEY=VALUE (e.g. zone=a,arch=x86)"))?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("--{flag}: '{part}' has an empty key"));
        }
        if let Some(old) = out.insert(k.to_string(), v.to_string()) {
            if old != v {
                return Err(format!(
                    "--{flag}: '{k}' is given twice ('{old}' and '{v}')"
                ));
            }
        }
    }
    Ok(out)
}

/// `a,b` (repeatable) into a list without blanks or repeats, in order.
pub fn name_list(items: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in items.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if !s.is_empty() && !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// `cpu=4,mem=8GiB,gpu=1` into whole numbers (sizes in bytes).
pub fn resources(items: &[String]) -> Result<BTreeMap<String, u64>, String> {
    kv_list(items, "resources")?
        .into_iter()
        .map(|(k, v)| {
            quantity(&v)
                .map(|n| (k.clone(), n))
                .map_err(|e| format!("--resources: {k}={v}: {e}"))
        })
        .collect()
}

/// A whole quantity with an optional unit: `4`, `1.5k`, `512MiB`, `8GiB`, `2G`.
/// Decimal units (k, M, G, T, P with optional `B`) are powers of 1000; binary units (Ki, Mi,
/// Gi, Ti, Pi with optional `B`) powers of 1024; a lone `B` is bytes.
pub fn quantity(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (&s[..split], s[split..].trim());
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1
    {
        return Err(format!("'{s}' is not a quantity (e.g. 4, 512MiB, 8GiB)"));
    }
    let lower = unit.to_ascii_lowercase();
    let mult: u128 = match lower.strip_suffix('b').unwrap_or(&lower) {
        "" => 1,
        "k" => 1_000,
        "m" => 1_000_000,
        "g" => 1_000_000_000,
        "t" => 1_000_000_000_000,
        "p" => 1_000_000_000_000_000,
        "ki" => 1 << 10,
        "mi" => 1 << 20,
        "gi" => 1 << 30,
        "ti" => 1 << 40,
        "pi" => 1 << 50,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' (use k, M, G, T or Ki, Mi, Gi, Ti, optionally with B)"
            ))
        }
    };
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let too_big = || format!("'{s}' is too large");
    if int.len() > 20 || frac.len() > 18 {
        return Err(too_big());
    }
    let int: u128 = int.parse().map_err(|_| too_big())?;
    let scale = 10u128.pow(frac.len() as u32);
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| too_big())?
    };
    let frac_part = frac * mult;
    if !frac_part.is_multiple_of(scale) {
        return Err(format!("'{s}' is not a whole number"));
    }
    let total = int
        .checked_mul(mult)
        .and_then(|v| v.checked_add(frac_part / scale))
        .ok_or_else(too_big)?;
    u64::try_from(total).map_err(|_| too_big())
}

/// `K=V` pairs (repeatable; split at the first `=` only, so the value may hold `=` and `,`).
pub fn env_pairs(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in items {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("--env: '{item}' is not NAME=VALUE"))?;
        if k.is_empty() {
            return Err(format!("--env: '{item}' has an empty name"));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// `--secret-env` entries: `NAME=VALUE`, or `NAME` for the value of this process's own
/// variable. Errors name the variable, never a value.
pub fn secret_pairs(items: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for item in items {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k, v.to_string()),
            None => {
                let v = std::env::var(item).map_err(|_| {
                    format!(
                        "--secret-env: '{item}' is not set in this environment (write NAME=VALUE, \
                         or NAME to take an exported variable's value)"
                    )
                })?;
                (item.as_str(), v)
            }
        };
        if !drover_api::secret::is_env_name(k) {
            return Err(format!(
                "--secret-env: '{}' is not a valid variable name (a letter or _, then letters, \
                 digits or _); write NAME=VALUE",
                k.chars().take(64).collect::<String>()
            ));
        }
        if out.insert(k.to_string(), v).is_some() {
            return Err(format!("--secret-env: {k} is given twice"));
        }
    }
    Ok(out)
}

/// `--pass-env` names: comma separated, each a valid variable name.
pub fn env_names(items: &[String]) -> Result<Vec<String>, String> {
    let names = name_list(items);
    match names.iter().find(|n| !drover_api::secret::is_env_name(n)) {
        Some(bad) => Err(format!("--pass-env: '{bad}' is not a valid variable name")),
        None => Ok(names),
    }
}

/// The command after `--`, each argument kept byte for byte; the API carries text, so an
/// argument that is not UTF-8 is refused rather than altered.
pub fn argv(args: &[OsString]) -> Result<Vec<String>, String> {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            a.to_str().map(str::to_string).ok_or_else(|| {
                format!(
                    "argument {} of the command ({:?}) is not valid UTF-8; Drover passes \
                     arguments as text and will not alter them",
                    i + 1,
                    a.to_string_lossy()
                )
            })
        })
        .collect()
}

/// A duration flag (`30s`, `500ms`, `2m`) into milliseconds.
pub fn duration_ms(s: &str) -> Result<u64, String> {
    parse_duration_ms(s.trim())
}

/// A duration flag checked here but sent as written (the server parses it the same way).
pub fn duration_text(s: &str) -> Result<String, String> {
    let s = s.trim();
    parse_duration_ms(s).map(|_| s.to_string())
}

/// A listen address: `127.0.0.1:7070`, `[::1]:7070` or `localhost:7070`.
pub fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| format!("'{s}' is not an address to listen on (e.g. 127.0.0.1:7070)"))
}

/// A task state name, checked before asking the server.
pub fn state(s: &str) -> Result<String, String> {
    s.parse::<drover_core::TaskState>()
        .map(|st| st.as_str().to_string())
}

/// A `--payload`: JSON text, `@FILE` (its contents) or `@-` (stdin).
pub fn payload(arg: &str) -> Result<serde_json::Value, String> {
    let text = match arg.strip_prefix('@') {
        Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| format!("--payload @-: cannot read stdin: {e}"))?;
            s
        }
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("--payload @{path}: cannot read it: {e}"))?,
        None => arg.to_string(),
    };
    serde_json::from_str(&text)
        .map_err(|e| format!("--payload is not JSON ({e}); e.g. --payload '{{\"w\": 100}}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_and_selectors() {
        let m = kv_list(&v(&["zone=a,arch=x86", "gpu=", " tier = gold "]), "labels").unwrap();
        assert_eq!(m["zone"], "a");
        assert_eq!(m["arch"], "x86");
        assert_eq!(m["gpu"], "");
        assert_eq!(m["tier"], "gold");
        assert_eq!(kv_list(&v(&["a=b=c"]), "labels").unwrap()["a"], "b=c");
        assert!(kv_list(&v(&["a=1,"]), "labels").unwrap().len() == 1);
        assert!(kv_list(&v(&["zone"]), "labels").is_err());
        assert!(kv_list(&v(&["=a"]), "labels").is_err());
        assert!(kv_list(&v(&["a=1", "a=2"]), "labels").is_err());
        assert!(kv_list(&v(&["a=1", "a=1"]), "labels").is_ok());
    }

    #[test]
    fn kinds() {
        assert_eq!(name_list(&v(&["a, b", "a,,c"])), ["a", "b", "c"]);
        assert!(name_list(&[]).is_empty());
    }

    #[test]
    fn resources_become_numbers() {
        let r = resources(&v(&["cpu=4,mem=8GiB,gpu=1"])).unwrap();
        assert_eq!(r["cpu"], 4);
        assert_eq!(r["mem"], 8 << 30);
        assert_eq!(r["gpu"], 1);
        assert!(resources(&v(&["mem=lots"])).is_err());
        assert!(resources(&v(&["cpu"])).is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("0").unwrap(), 0);
        assert_eq!(quantity("512MiB").unwrap(), 512 << 20);
        assert_eq!(quantity("512Mi").unwrap(), 512 << 20);
        assert_eq!(quantity("8G").unwrap(), 8_000_000_000);
        assert_eq!(quantity("8gb").unwrap(), 8_000_000_000);
        assert_eq!(quantity("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(quantity("1.5k").unwrap(), 1500);
        assert_eq!(quantity("2 KiB").unwrap(), 2048);
        assert_eq!(quantity("100B").unwrap(), 100);
        assert!(quantity("1.5").is_err(), "not whole");
        assert!(quantity("0.0001k").is_err(), "not whole");
        assert!(quantity("-1").is_err());
        assert!(quantity("1.2.3").is_err());
        assert!(quantity(".5k").is_err());
        assert!(quantity("5x").is_err());
        assert!(quantity("5bb").is_err());
        assert!(quantity("").is_err());
        assert!(quantity("99999999999999999999999").is_err());
        assert!(quantity("20000PiB").is_err(), "beyond u64");
    }

    #[test]
    fn secret_pairs_take_values_or_the_environment_and_never_echo_a_value() {
        let e = secret_pairs(&v(&["TOKEN=a=b,c", "PATH"])).unwrap();
        assert_eq!(e["TOKEN"], "a=b,c");
        assert_eq!(e["PATH"], std::env::var("PATH").unwrap());
        let err = secret_pairs(&v(&["=hunter2"])).unwrap_err();
        assert!(
            err.contains("not a valid") && !err.contains("hunter2"),
            "{err}"
        );
        let err = secret_pairs(&v(&["BAD NAME=hunter2"])).unwrap_err();
        assert!(
            err.contains("BAD NAME") && !err.contains("hunter2"),
            "{err}"
        );
        let err = secret_pairs(&v(&["DROVER_SURELY_UNSET_VARIABLE"])).unwrap_err();
        assert!(err.contains("not set"), "{err}");
        assert!(secret_pairs(&v(&["A=1", "A=2"])).is_err());
        assert_eq!(env_names(&v(&["A,B_1", "A"])).unwrap(), ["A", "B_1"]);
        assert!(env_names(&v(&["A-B"])).is_err());
    }

    #[test]
    fn env_values_keep_equals_and_commas() {
        let e = env_pairs(&v(&["X=a b=c", "Y=1,2", "EMPTY="])).unwrap();
        assert_eq!(e["X"], "a b=c");
        assert_eq!(e["Y"], "1,2");
        assert_eq!(e["EMPTY"], "");
        assert!(env_pairs(&v(&["NOVALUE"])).is_err());
        assert!(env_pairs(&v(&["=x"])).is_err());
    }

    #[test]
    fn argv_is_exact_or_refused() {
        let args: Vec<OsString> = ["sh", "", "two words", "new\nline", "ünï"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(
            argv(&args).unwrap(),
            ["sh", "", "two words", "new\nline", "ünï"]
        );
        use std::os::unix::ffi::OsStringExt;
        let bad = vec![OsString::from("echo"), OsString::from_vec(vec![0xff, b'a'])];
        let e = argv(&bad).unwrap_err();
        assert!(e.contains("argument 2"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn durations_and_addresses() {
        assert_eq!(duration_ms("15s").unwrap(), 15_000);
        assert!(duration_ms("-3s").unwrap_err().contains("negative"));
        assert_eq!(duration_text(" 1m ").unwrap(), "1m");
        assert!(duration_text("soon").is_err());
        assert_eq!(
            listen_addr("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert!(listen_addr("localhost:7070").unwrap().ip().is_loopback());
        assert!(listen_addr("nonsense").is_err());
        assert_eq!(state("timed_out").unwrap(), "timed_out");
        assert!(state("nonsense").unwrap_err().contains("queued"));
    }
}
