//! Text that fits: every line the cockpit draws is cut to its cell and a
//! cut always ends in `…`, so a number is never shown half without a mark.

use ratatui::text::{Line, Span};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Display width in terminal cells.
pub fn width(s: &str) -> usize {
    s.width()
}

/// `s` in at most `max` cells; a cut one ends in `…`.
/// `s` in at most `max` columns, cut in the middle so both ends show:
/// names that differ only at the end (`notifications-17`,
/// `notifications-18`) stay apart (`notifi…-17`). A last `-part` is kept
/// whole when it takes at most half the room.
pub fn cut_middle(s: &str, max: usize) -> String {
    if s.width() <= max {
        return s.to_string();
    }
    if max < 4 {
        return cut(s, max);
    }
    let room = max - 1;
    let suffix_width = s.rfind('-').map_or(0, |i| s[i..].width());
    let tail_width = if suffix_width > 0 && suffix_width <= room / 2 { suffix_width } else { room / 2 };
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > tail_width {
            break;
        }
        tail.push(c);
        used += w;
    }
    let tail: String = tail.into_iter().rev().collect();
    let head = cut(s, room - used + 1);
    format!("{}{tail}", head)
}

pub fn cut(s: &str, max: usize) -> String {
    if s.width() <= max {
        return s.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > max - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// `line` in at most `max` cells: spans past the edge are dropped and the
/// text is cut where it reaches the edge, with `…` in the style of the
/// span it cut.
pub fn fit(line: Line<'_>, max: u16) -> Line<'static> {
    let max = max as usize;
    let total: usize = line.spans.iter().map(|s| s.content.width()).sum();
    let mut spans = Vec::new();
    if total <= max {
        spans.extend(line.spans.iter().map(|s| Span::styled(s.content.to_string(), s.style)));
    } else if max > 0 {
        let budget = max - 1;
        let mut used = 0;
        let mut mark = line.spans.first().map(|s| s.style).unwrap_or_default();
        for span in &line.spans {
            mark = span.style;
            let w = span.content.width();
            if used + w <= budget {
                spans.push(Span::styled(span.content.to_string(), span.style));
                used += w;
                continue;
            }
            let mut part = String::new();
            for c in span.content.chars() {
                let cw = c.width().unwrap_or(0);
                if used + cw > budget {
                    break;
                }
                part.push(c);
                used += cw;
            }
            if !part.is_empty() {
                spans.push(Span::styled(part, span.style));
            }
            break;
        }
        spans.push(Span::styled("…", mark));
    }
    let mut out = Line::from(spans).style(line.style);
    out.alignment = line.alignment;
    out
}

/// Words of `text` in lines of at most `max` cells (a word longer than a
/// line is cut with `…`).
pub fn wrap(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let needed = if current.is_empty() { word.width() } else { current.width() + 1 + word.width() };
        if needed <= max {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        current = cut(word, max);
    }
    if !current.is_empty() || lines.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::style::{Color, Style};

    #[test]
    fn a_middle_cut_keeps_what_tells_names_apart() {
        assert_eq!(cut_middle("notifications-17", 10), "notifi…-17");
        assert_eq!(cut_middle("notifications-18", 10), "notifi…-18");
        assert_eq!(cut_middle("recommendations", 9), "reco…ions");
        assert_eq!(cut_middle("checkout-api", 12), "checkout-api");
        for max in 4..16 {
            assert!(cut_middle("notifications-17", max).width() <= max, "{max}");
        }
    }

    #[test]
    fn a_cut_ends_in_an_ellipsis_and_fits() {
        assert_eq!(cut("985.5/s", 7), "985.5/s");
        assert_eq!(cut("985.5/s", 5), "985.…");
        assert_eq!(cut("abc", 1), "…");
        assert_eq!(cut("abc", 0), "");
    }

    #[test]
    fn a_line_is_cut_in_the_style_of_its_last_span() {
        let red = Style::new().fg(Color::Red);
        let line = Line::from(vec![Span::raw("stage 2/4 "), Span::styled("10 %", red)]);
        let cut = fit(line.clone(), 12);
        assert_eq!(cut.to_string(), "stage 2/4 1…");
        assert_eq!(cut.spans[1].style, red);
        assert_eq!(fit(line.clone(), 14).to_string(), "stage 2/4 10 %");
        // The edge between two spans still shows the mark.
        assert_eq!(fit(line, 10).to_string(), "stage 2/4…");
    }

    #[test]
    fn words_wrap_and_long_words_are_cut() {
        assert_eq!(wrap("paused by backend: proxy down", 12), vec!["paused by", "backend:", "proxy down"]);
        assert_eq!(wrap("averyveryverylongword x", 8), vec!["averyve…", "x"]);
        assert_eq!(wrap("", 8), vec![""]);
    }
}
