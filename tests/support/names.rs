//! The API server's name and label rules, with its exact messages
//! (apimachinery `pkg/util/validation/validation.go`, v0.32.2).

const LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1035_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_PART_MESSAGE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// Which rule an object's name follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Dns1123Subdomain,
    Dns1035Label,
    Dns1123Label,
}

fn lower_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty() && b.iter().all(|&c| lower_alnum(c) || c == b'-') && lower_alnum(b[0]) && lower_alnum(b[b.len() - 1])
}

/// The problems with `name` under `rule`, as the API server words them ("" when fine).
pub fn name_problems(rule: NameRule, name: &str) -> Vec<String> {
    let (max, ok, message) = match rule {
        NameRule::Dns1123Subdomain => (253, name.split('.').all(is_label), SUBDOMAIN_MESSAGE),
        NameRule::Dns1123Label => (63, is_label(name), LABEL_MESSAGE),
        NameRule::Dns1035Label => (
            63,
            is_label(name) && name.as_bytes()[0].is_ascii_lowercase(),
            DNS1035_MESSAGE,
        ),
    };
    let mut problems = Vec::new();
    if name.len() > max {
        problems.push(format!("must be no more than {max} characters"));
    }
    if !ok {
        problems.push(message.to_string());
    }
    problems
}

fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|&c| alnum(c) || b"-_.".contains(&c))
        && alnum(b[0])
        && alnum(b[b.len() - 1])
}

/// Problems with a label value.
pub fn label_value_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 63 {
        problems.push("must be no more than 63 characters".to_string());
    }
    if !value.is_empty() && !is_name_part(&value[..value.len().min(63)]) {
        problems.push(LABEL_VALUE_MESSAGE.to_string());
    }
    problems
}

/// Problems with a label or annotation key (`[prefix/]name`).
pub fn key_problems(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let mut problems = Vec::new();
    if let Some(prefix) = prefix {
        problems.extend(
            name_problems(NameRule::Dns1123Subdomain, prefix)
                .into_iter()
                .map(|p| format!("prefix part {p}")),
        );
    }
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        problems.push("name part must be no more than 63 characters".to_string());
    } else if !is_name_part(name) {
        problems.push(NAME_PART_MESSAGE.to_string());
    }
    problems
}
