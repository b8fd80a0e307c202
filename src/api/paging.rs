//! Paging parameters shared by every list endpoint: one rule for `limit` and one for the cursor
//! of the next page, so every list refuses the same bad input with the same code and sentence.
//!
//! What it must never do: decide what a page holds; the domain's queries do (keyset order, on
//! each table's own key).

use crate::error::ApiError;

/// `limit` as given, or `default` when absent; `invalid_limit` naming the range when it is
/// outside `1..=max`.
pub fn limit(given: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = given.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            format!("limit must be between 1 and {max}"),
        ));
    }
    Ok(limit)
}

/// The next page's cursor: the last item's key when the page is full (there may be more), none
/// when it is not (this was the last page).
pub fn next_after<T, K>(items: &[T], limit: i64, key: impl Fn(&T) -> K) -> Option<K> {
    if items.len() as i64 == limit {
        items.last().map(key)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_default_range_and_errors() {
        assert_eq!(limit(None, 100, 500).unwrap(), 100);
        assert_eq!(limit(Some(1), 100, 500).unwrap(), 1);
        assert_eq!(limit(Some(500), 100, 500).unwrap(), 500);
        for bad in [0, -1, 501, i64::MAX, i64::MIN] {
            let e = limit(Some(bad), 100, 500).unwrap_err();
            assert_eq!(e.code, "invalid_limit");
            assert!(e.message.contains("between 1 and 500"), "{}", e.message);
        }
    }

    #[test]
    fn next_after_only_on_a_full_page() {
        assert_eq!(next_after(&[1, 2, 3], 3, |x| *x), Some(3));
        assert_eq!(next_after(&[1, 2], 3, |x| *x), None);
        assert_eq!(next_after::<i32, i32>(&[], 3, |x| *x), None);
    }
}
