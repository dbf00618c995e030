//! Config validation helpers every domain module uses for its own section: the error that
//! names the field and the value, and the name and uniqueness checks. A leaf: it imports
//! nothing of the crate.

/// A configuration value that is not valid, with the field it is in.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Names are letters, digits, `-`, `_` and `.` (they appear in records and metric labels).
pub fn check_name(field: &str, name: &str) -> Result<(), Invalid> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(invalid(
            field,
            format!("{name:?}: use letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// No two entries of `what` share a name.
pub fn unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<(), Invalid> {
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.enumerate() {
        if !seen.insert(n) {
            return Err(invalid(format!("{what}[{i}].name"), format!("duplicate name {n:?}")));
        }
    }
    Ok(())
}
