//! Standard base64 (RFC 4648, with padding), as Kubernetes encodes Secret data and HTTP Basic
//! authentication encodes credentials.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn encode(bytes: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let bits = group
            .iter()
            .enumerate()
            .fold(0u32, |bits, (i, b)| bits | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                encoded.push(char::from(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

/// `None` when `text` is not base64.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| ALPHABET.iter().position(|a| *a == c).map(|p| p as u32);
    let bytes = text.trim_end_matches('=').as_bytes();
    if text.len() % 4 != 0 || bytes.len() % 4 == 1 {
        return None;
    }
    let mut decoded = Vec::with_capacity(bytes.len() * 3 / 4);
    for group in bytes.chunks(4) {
        let mut bits = 0u32;
        for (i, c) in group.iter().enumerate() {
            bits |= value(*c)? << (18 - 6 * i);
        }
        decoded.extend_from_slice(&bits.to_be_bytes()[1..group.len()]);
    }
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_base64() {
        for text in [
            &b""[..],
            b"k",
            b"sk",
            b"sk-",
            b"sk-123",
            b"user:p@ss word",
            &[0, 255, 128, 7],
        ] {
            assert_eq!(decode(&encode(text)).as_deref(), Some(text));
        }
        assert_eq!(encode(b"sk-123"), "c2stMTIz");
        assert_eq!(encode(b"k"), "aw==");
        assert_eq!(decode("eyJhIjoxfQ==").as_deref(), Some(&br#"{"a":1}"#[..]));
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode("abc"), None);
    }
}
