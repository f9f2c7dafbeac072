//! IDs and names of containers and pods: generation and validation.

use crate::error::RuntimeError;

/// Longest name accepted (a DNS name's limit, as podman).
pub const MAX_NAME_LEN: usize = 253;

const ADJECTIVES: &[&str] = &[
    "able", "agile", "airy", "amber", "ample", "arctic", "ardent", "azure", "balmy", "bold",
    "brave", "breezy", "bright", "brisk", "bubbly", "calm", "candid", "careful", "cheery", "civic",
    "clever", "cosmic", "cozy", "crisp", "curious", "dapper", "daring", "deft", "devoted", "dewy",
    "eager", "earnest", "elated", "elegant", "epic", "even", "fair", "fancy", "fearless",
    "festive", "fluent", "fond", "frank", "fresh", "frosty", "gentle", "giddy", "gleaming",
    "glossy", "golden", "graceful", "grand", "hardy", "hearty", "honest", "humble", "jolly",
    "jovial", "keen", "kind", "lively", "loyal", "lucid", "lucky", "lunar", "mellow", "merry",
    "mighty", "misty", "modest", "nimble", "noble", "polar", "polite", "proud", "quick", "quiet",
    "radiant", "rapid", "ready", "regal", "robust", "rosy", "rustic", "serene", "sharp", "shiny",
    "silent", "sleek", "smooth", "snowy", "solar", "spry", "steady", "sturdy", "sunny", "swift",
    "tidy", "vivid", "witty",
];

const SURNAMES: &[&str] = &[
    "abel",
    "agnesi",
    "ampere",
    "babbage",
    "backus",
    "banach",
    "bernoulli",
    "bessel",
    "bohr",
    "boole",
    "borel",
    "brahe",
    "cantor",
    "cardano",
    "carnot",
    "cauchy",
    "cayley",
    "chebyshev",
    "church",
    "clausius",
    "coulomb",
    "cramer",
    "dedekind",
    "descartes",
    "dijkstra",
    "dirac",
    "eckert",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fibonacci",
    "fourier",
    "fresnel",
    "galois",
    "gauss",
    "germain",
    "gibbs",
    "godel",
    "hamming",
    "hardy",
    "hertz",
    "hilbert",
    "hopper",
    "huygens",
    "jacobi",
    "joule",
    "kelvin",
    "kepler",
    "knuth",
    "kolmogorov",
    "kovalevskaya",
    "lagrange",
    "lamport",
    "laplace",
    "legendre",
    "leibniz",
    "liskov",
    "lorentz",
    "lovelace",
    "markov",
    "maxwell",
    "meitner",
    "minkowski",
    "napier",
    "navier",
    "neumann",
    "noether",
    "ohm",
    "pascal",
    "peano",
    "planck",
    "poincare",
    "poisson",
    "ramanujan",
    "riemann",
    "ritchie",
    "rutherford",
    "shannon",
    "sierpinski",
    "stokes",
    "sutherland",
    "tesla",
    "thompson",
    "turing",
    "venn",
    "volta",
    "wallis",
    "watt",
    "weierstrass",
    "wiles",
    "wirth",
    "yau",
    "zuse",
    "zermelo",
    "kahan",
    "hoare",
    "milner",
    "backhouse",
    "floyd",
];

/// `n` random bytes from the operating system's generator.
fn random_bytes<const N: usize>() -> Result<[u8; N], RuntimeError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| RuntimeError::Random(e.to_string()))?;
    Ok(buf)
}

/// A new object ID: 64 lowercase hex characters from the OS RNG, re-drawn while the first 12
/// characters are all digits (so a short ID is never mistaken for a number).
pub fn generate_id() -> Result<String, RuntimeError> {
    loop {
        let bytes: [u8; 32] = random_bytes()?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if !id[..12].bytes().all(|b| b.is_ascii_digit()) {
            return Ok(id);
        }
    }
}

/// A random `adjective_surname` name; from the sixth attempt on, a numeric suffix widens the space.
pub fn random_name(attempt: u32) -> Result<String, RuntimeError> {
    let r: [u8; 8] = random_bytes()?;
    let a = u16::from_le_bytes([r[0], r[1]]) as usize % ADJECTIVES.len();
    let s = u16::from_le_bytes([r[2], r[3]]) as usize % SURNAMES.len();
    let mut name = format!("{}_{}", ADJECTIVES[a], SURNAMES[s]);
    if attempt >= 5 {
        let n = u32::from_le_bytes([r[4], r[5], r[6], r[7]]) % 100_000;
        name.push_str(&format!("_{n}"));
    }
    Ok(name)
}

/// How many times a generated name is re-drawn after a collision before giving up.
const NAME_ATTEMPTS: u32 = 64;

/// Runs `add` with the given name, or with generated names until one is free (`add` fails with
/// the state's name-in-use error for a taken one). `what` names the object in the error.
pub(crate) fn add_named<T>(
    given: Option<&str>,
    what: &str,
    mut add: impl FnMut(String) -> Result<T, rpod_state::StateError>,
) -> Result<T, RuntimeError> {
    if let Some(name) = given {
        return Ok(add(name.to_owned())?);
    }
    for attempt in 0..NAME_ATTEMPTS {
        match add(random_name(attempt)?) {
            Ok(v) => return Ok(v),
            Err(e) if e.kind() == rpod_state::ErrorKind::NameInUse => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(RuntimeError::InvalidSpec(format!(
        "could not find a free {what} name in {NAME_ATTEMPTS} attempts"
    )))
}

/// Checks a user-chosen container or pod name: 1 to 253 characters, starting with a letter or
/// digit, followed by letters, digits, `_`, `.` or `-` (podman's rule).
pub fn validate_name(name: &str) -> Result<(), RuntimeError> {
    let reason = if name.is_empty() {
        Some("it must not be empty")
    } else if name.len() > MAX_NAME_LEN {
        Some("it must be at most 253 characters long")
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("it must start with a letter or a digit")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        Some("it may contain only letters, digits, '_', '.' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RuntimeError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_not_numeric_prefixed() {
        for _ in 0..100 {
            let id = generate_id().unwrap_or_default();
            assert_eq!(id.len(), 64);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            assert!(!id[..12].bytes().all(|b| b.is_ascii_digit()));
        }
    }

    #[test]
    fn names_are_valid() {
        for attempt in 0..10 {
            let n = random_name(attempt).unwrap_or_default();
            assert!(validate_name(&n).is_ok(), "{n}");
            assert_eq!(n.contains(|c: char| c.is_ascii_digit()), attempt >= 5);
        }
    }

    #[test]
    fn invalid_names_are_rejected() {
        let long = "a".repeat(254);
        for bad in [
            "../x",
            "",
            "a b",
            long.as_str(),
            "-x",
            ".x",
            "x/y",
            "x:y",
            "ä",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "web-1", "x.y_z", &"a".repeat(253)] {
            assert!(validate_name(good).is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn word_lists_have_no_duplicates() {
        let mut a = ADJECTIVES.to_vec();
        a.sort_unstable();
        a.dedup();
        assert_eq!(a.len(), ADJECTIVES.len());
        let mut s = SURNAMES.to_vec();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), SURNAMES.len());
    }
}
