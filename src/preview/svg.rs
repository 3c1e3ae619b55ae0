//! Turns a rendered buffer into an SVG picture: the real render, cell by
//! cell, for README screenshots (`scripts/screenshots`).

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use std::fmt::Write;

const CELL_W: f64 = 8.4;
const CELL_H: f64 = 17.0;
const FG: &str = "#d0d0d0";
const BG: &str = "#1c1c1c";

/// CSS colour of a ratatui colour (`None` for the terminal default).
fn css(c: Color) -> Option<String> {
    let named = match c {
        Color::Reset => return None,
        Color::Rgb(r, g, b) => return Some(format!("#{r:02x}{g:02x}{b:02x}")),
        Color::Black => "#000000",
        Color::Red => "#cd3131",
        Color::Green => "#0dbc79",
        Color::Yellow => "#e5e510",
        Color::Blue => "#2472c8",
        Color::Magenta => "#bc3fbc",
        Color::Cyan => "#11a8cd",
        Color::Gray => "#bbbbbb",
        Color::DarkGray => "#666666",
        Color::LightRed => "#f14c4c",
        Color::LightGreen => "#23d18b",
        Color::LightYellow => "#f5f543",
        Color::LightBlue => "#3b8eea",
        Color::LightMagenta => "#d670d6",
        Color::LightCyan => "#29b8db",
        Color::White => "#ffffff",
        Color::Indexed(i) => return Some(format!("#{0:02x}{0:02x}{0:02x}", i)),
    };
    Some(named.to_string())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// How one cell looks, resolved to CSS colours.
#[derive(Clone, PartialEq)]
struct Look {
    fg: String,
    bg: Option<String>,
    bold: bool,
}

fn look(cell: &ratatui::buffer::Cell) -> Look {
    let (mut fg, mut bg) = (css(cell.fg).unwrap_or(FG.into()), css(cell.bg));
    if cell.modifier.contains(Modifier::REVERSED) {
        let old_fg = fg.clone();
        fg = bg.unwrap_or(BG.into());
        bg = Some(old_fg);
    }
    Look { fg, bg, bold: cell.modifier.contains(Modifier::BOLD) }
}

/// The buffer as a standalone SVG document: one background rectangle and one
/// text run per stretch of same-looking cells, each run stretched to its
/// cells' width so columns line up whatever font the viewer has.
pub fn render(buffer: &Buffer) -> String {
    let area = buffer.area;
    let (w, h) = (area.width as f64 * CELL_W, area.height as f64 * CELL_H);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14" xml:space="preserve">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="{BG}"/>"#);
    for y in 0..area.height {
        let cells: Vec<&ratatui::buffer::Cell> = (0..area.width).map(|x| &buffer[(area.x + x, area.y + y)]).collect();
        let mut x = 0;
        while x < cells.len() {
            let style = look(cells[x]);
            let run = cells[x..].iter().take_while(|c| look(c) == style).count();
            let text: String = cells[x..x + run].iter().map(|c| c.symbol()).collect();
            write_run(&mut out, x, y, run, &style, &text);
            x += run;
        }
    }
    out.push_str("</svg>\n");
    out
}

fn write_run(out: &mut String, x: usize, y: u16, len: usize, style: &Look, text: &str) {
    let (px, py, width) = (x as f64 * CELL_W, y as f64 * CELL_H, len as f64 * CELL_W);
    if let Some(bg) = &style.bg {
        let _ = writeln!(out, r#"<rect x="{px:.1}" y="{py:.1}" width="{width:.1}" height="{CELL_H}" fill="{bg}"/>"#);
    }
    if text.trim().is_empty() {
        return;
    }
    let bold = if style.bold { r#" font-weight="bold""# } else { "" };
    let _ = writeln!(
        out,
        r#"<text x="{px:.1}" y="{:.1}" fill="{}"{bold} textLength="{width:.1}" lengthAdjust="spacingAndGlyphs">{}</text>"#,
        py + CELL_H * 0.78,
        style.fg,
        escape(text)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::layout::Rect;
    use ratatui::style::{Color, Style};

    #[test]
    fn cells_become_text_with_their_colours() {
        let mut buffer = Buffer::empty(Rect::new(0, 0, 4, 1));
        buffer.set_string(0, 0, "a<", Style::new().fg(Color::Red).bg(Color::Blue));
        let svg = render(&buffer);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains(r##"fill="#2472c8""##), "background rect");
        assert!(
            svg.contains(r##"fill="#cd3131" textLength="16.8" lengthAdjust="spacingAndGlyphs">a&lt;</text>"##),
            "{svg}"
        );
    }
}
