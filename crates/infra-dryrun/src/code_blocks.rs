//! Fenced code blocks of a Markdown proposal.

/// The contents of every closed fenced block (``` or ~~~) whose info string names one of
/// `languages` (case-insensitive), in order.
pub fn code_blocks<'a>(text: &'a str, languages: &[String]) -> Vec<&'a str> {
    let mut blocks = Vec::new();
    let mut open: Option<(char, usize, bool, usize)> = None; // marker, length, wanted, start offset
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        let line_start = offset;
        offset += line.len();
        let (Some(marker), true) = (marker, run >= 3) else { continue };
        match open {
            None => {
                let info = trimmed[run..].trim();
                let language =
                    info.split(|c: char| c.is_whitespace() || c == ',' || c == '{').next().unwrap_or("");
                let wanted = languages.iter().any(|l| l.eq_ignore_ascii_case(language));
                open = Some((marker, run, wanted, offset));
            }
            Some((m, len, wanted, start))
                if m == marker && run >= len && trimmed[run..].trim().is_empty() =>
            {
                if wanted {
                    blocks.push(&text[start..line_start]);
                }
                open = None;
            }
            Some(_) => {}
        }
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn langs(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn finds_blocks_of_the_wanted_languages_in_order() {
        let text = "Intro\n```python\nprint(1)\n```\n```sh\nls\n```\n~~~Py\nx = 2\ny = 3\n~~~\n";
        assert_eq!(code_blocks(text, &langs(&["python", "py"])), ["print(1)\n", "x = 2\ny = 3\n"]);
        assert_eq!(code_blocks(text, &langs(&["sh"])), ["ls\n"]);
        assert!(code_blocks(text, &langs(&["rust"])).is_empty());
    }

    #[test]
    fn unclosed_blocks_and_nested_fences_are_handled() {
        assert!(code_blocks("```python\nprint(1)\n", &langs(&["python"])).is_empty());
        let nested = "````python\nx = '''\n```\n'''\n````\n";
        assert_eq!(code_blocks(nested, &langs(&["python"])), ["x = '''\n```\n'''\n"]);
    }

    #[test]
    fn info_strings_with_attributes_still_name_the_language() {
        assert_eq!(code_blocks("```python title=\"a.py\"\npass\n```\n", &langs(&["python"])), ["pass\n"]);
        assert_eq!(code_blocks("```python,ignore\npass\n```", &langs(&["python"])), ["pass\n"]);
    }
}
