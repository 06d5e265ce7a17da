//! Reading a submitted form (`application/x-www-form-urlencoded`): fields by
//! name, repeated ones (the selection of a bulk action) in order. The body is
//! already bounded by the router (`[limits] max_message_size`); a form has at
//! most [`MAX_FIELDS`] fields.

/// Most fields in a form (a page's selection is at most 200 entries).
pub const MAX_FIELDS: usize = 1000;

/// A submitted form.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// Reads `body`; an error says what is wrong.
    pub fn parse(body: &[u8]) -> Result<Form, String> {
        let mut pairs = Vec::new();
        for (k, v) in form_urlencoded::parse(body) {
            if pairs.len() >= MAX_FIELDS {
                return Err(format!("more than {MAX_FIELDS} form fields"));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Form { pairs })
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `name` trimmed, None when absent or empty.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// True when checkbox `name` is ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A query string made of `pairs` (empty values left out), without the `?`.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_by_name_and_repeated_ones_kept() {
        let f = Form::parse(b"id=a&id=b&act=release&note=+x+&empty=").unwrap();
        assert_eq!(f.all("id"), vec!["a", "b"]);
        assert_eq!(f.get("act"), Some("release"));
        assert_eq!(f.text("note"), Some("x"));
        assert_eq!(f.text("empty"), None);
        assert!(f.checked("empty"));
        assert!(!f.checked("absent"));
        let many = "a=1&".repeat(MAX_FIELDS + 1);
        assert!(Form::parse(many.as_bytes()).is_err());
        assert_eq!(query(&[("a", "x y"), ("b", ""), ("c", "@")]), "a=x+y&c=%40");
    }
}
