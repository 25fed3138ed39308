//! Words of the shell command lines reports print, so a user can paste them.

/// `word` as one word of a shell command line, quoted only when it needs to be.
pub fn shell_word(word: &str) -> String {
    if word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-:=,@".contains(c)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_word_is_quoted_only_when_a_shell_would_split_or_expand_it() {
        assert_eq!(shell_word("examples/demo/broken.toml"), "examples/demo/broken.toml");
        assert_eq!(shell_word("my target.toml"), "'my target.toml'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("cache,store-outage postgres"), "'cache,store-outage postgres'");
    }
}
