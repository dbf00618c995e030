//! A very small terminal for the `tollgate top` tests: enough of xterm to replay what
//! ratatui on crossterm writes (cursor positioning, clearing, the alternate screen; styles are
//! ignored) into a grid of characters a test can read.

/// The visible screen and what the program asked of the terminal.
pub struct Screen {
    rows: usize,
    cols: usize,
    grid: Vec<Vec<char>>,
    row: usize,
    col: usize,
    /// In the alternate screen now.
    pub alternate: bool,
    /// Times the program entered and left the alternate screen.
    pub entered_alternate: usize,
    pub left_alternate: usize,
    /// The cursor is hidden now.
    pub cursor_hidden: bool,
}

impl Screen {
    pub fn new(rows: usize, cols: usize) -> Screen {
        Screen {
            rows,
            cols,
            grid: vec![vec![' '; cols]; rows],
            row: 0,
            col: 0,
            alternate: false,
            entered_alternate: 0,
            left_alternate: 0,
            cursor_hidden: false,
        }
    }

    fn clear(&mut self) {
        self.grid = vec![vec![' '; self.cols]; self.rows];
    }

    fn put(&mut self, c: char) {
        if self.row < self.rows && self.col < self.cols {
            self.grid[self.row][self.col] = c;
        }
        self.col = (self.col + 1).min(self.cols);
    }

    fn csi(&mut self, params: &str, fin: char) {
        let private = params.starts_with('?');
        let nums: Vec<usize> = params
            .trim_start_matches('?')
            .split(';')
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        let n = |i: usize, default: usize| nums.get(i).copied().filter(|v| *v != 0).unwrap_or(default);
        match (private, fin) {
            (false, 'H' | 'f') => {
                self.row = (n(0, 1) - 1).min(self.rows.saturating_sub(1));
                self.col = (n(1, 1) - 1).min(self.cols.saturating_sub(1));
            }
            (false, 'A') => self.row = self.row.saturating_sub(n(0, 1)),
            (false, 'B') => self.row = (self.row + n(0, 1)).min(self.rows.saturating_sub(1)),
            (false, 'C') => self.col = (self.col + n(0, 1)).min(self.cols.saturating_sub(1)),
            (false, 'D') => self.col = self.col.saturating_sub(n(0, 1)),
            (false, 'G') => self.col = (n(0, 1) - 1).min(self.cols.saturating_sub(1)),
            (false, 'J') => match nums.first().copied().unwrap_or(0) {
                0 => {
                    for c in self.col..self.cols {
                        self.grid[self.row][c] = ' ';
                    }
                    for r in self.row + 1..self.rows {
                        self.grid[r] = vec![' '; self.cols];
                    }
                }
                _ => self.clear(),
            },
            (false, 'K') => {
                let (from, to) = match nums.first().copied().unwrap_or(0) {
                    0 => (self.col, self.cols),
                    1 => (0, self.col + 1),
                    _ => (0, self.cols),
                };
                for c in from..to.min(self.cols) {
                    self.grid[self.row][c] = ' ';
                }
            }
            (true, 'h') if nums.contains(&1049) => {
                self.alternate = true;
                self.entered_alternate += 1;
                self.clear();
            }
            (true, 'l') if nums.contains(&1049) => {
                self.alternate = false;
                self.left_alternate += 1;
                self.clear();
            }
            (true, 'l') if nums.contains(&25) => self.cursor_hidden = true,
            (true, 'h') if nums.contains(&25) => self.cursor_hidden = false,
            _ => {} // styles (`m`) and modes the tests do not look at
        }
    }

    /// Replays `bytes` as the terminal would.
    pub fn feed(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\x1b' => match chars.next() {
                    Some('[') => {
                        let mut params = String::new();
                        for p in chars.by_ref() {
                            if ('\x40'..='\x7e').contains(&p) {
                                self.csi(&params, p);
                                break;
                            }
                            params.push(p);
                        }
                    }
                    // OSC: up to BEL or ESC \.
                    Some(']') => {
                        while let Some(p) = chars.next() {
                            if p == '\x07' || (p == '\x1b' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    Some('(' | ')') => {
                        chars.next();
                    }
                    _ => {}
                },
                '\r' => self.col = 0,
                '\n' => self.row = (self.row + 1).min(self.rows.saturating_sub(1)),
                '\x08' => self.col = self.col.saturating_sub(1),
                c if c.is_control() => {}
                c => self.put(c),
            }
        }
    }

    /// The screen as text, one line per row, trailing spaces dropped.
    pub fn text(&self) -> String {
        self.grid
            .iter()
            .map(|r| r.iter().collect::<String>().trim_end().to_string() + "\n")
            .collect()
    }

    /// The first row holding `needle`.
    pub fn row_of(&self, needle: &str) -> Option<usize> {
        self.grid
            .iter()
            .position(|r| r.iter().collect::<String>().contains(needle))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_cursor_moves_and_the_alternate_screen() {
        let mut s = Screen::new(3, 10);
        s.feed(b"\x1b[?1049h\x1b[?25l\x1b[2;3Hab\x1b[1mc\x1b[0m\x1b[1;1Hx");
        assert_eq!(s.text(), "x\n  abc\n\n");
        assert!(s.alternate && s.cursor_hidden);
        s.feed("\x1b[3;1H\u{2500}\u{2026}".as_bytes());
        assert_eq!(s.row_of("\u{2500}\u{2026}"), Some(2));
        s.feed(b"\x1b[?25h\x1b[?1049l");
        assert_eq!((s.entered_alternate, s.left_alternate, s.cursor_hidden), (1, 1, false));
    }
}
