//! The upstream file as NGINX reads it: tokens, the `upstream NAME { … }`
//! block, its `server` lines and the share they give each version.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// One `server` line of an upstream block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServerLine {
    pub(super) address: String,
    /// `weight=N`; NGINX's default is 1.
    pub(super) weight: Option<u32>,
    pub(super) down: bool,
}

impl ServerLine {
    /// The weight NGINX balances with: 0 when down.
    fn effective_weight(&self) -> u64 {
        if self.down {
            0
        } else {
            u64::from(self.weight.unwrap_or(1))
        }
    }
}

/// The canary's share of the two servers' effective weights, rounded to a
/// percent; `None` when both are 0 (nobody serves, so there is no share).
pub(super) fn canary_share(stable: &ServerLine, canary: &ServerLine) -> Option<u8> {
    share(stable.effective_weight(), canary.effective_weight())
}

pub(super) fn share(stable: u64, canary: u64) -> Option<u8> {
    let (s, c) = (stable, canary);
    let total = s + c;
    (total > 0).then(|| ((c * 100 + total / 2) / total) as u8)
}

/// NGINX config tokens: words, `{`, `}` and `;`, without comments.
fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split_once('#').map_or(line, |(code, _)| code);
        let mut word = String::new();
        for c in code.chars() {
            match c {
                '{' | '}' | ';' => {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    out.push(c.to_string());
                }
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                }
                '"' | '\'' => {}
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

/// The `server` lines of `upstream NAME { … }`; `None` when there is no such block.
pub(super) fn parse_upstream(text: &str, name: &str) -> Option<Vec<ServerLine>> {
    let tokens = tokens(text);
    let start = tokens.windows(3).position(|w| w[0] == "upstream" && w[1] == name && w[2] == "{")? + 3;
    let mut servers = Vec::new();
    let mut statement: Vec<&str> = Vec::new();
    for token in &tokens[start..] {
        match token.as_str() {
            "}" => return Some(servers),
            ";" => {
                if let ["server", address, params @ ..] = statement.as_slice() {
                    servers.push(server_line(address, params));
                }
                statement.clear();
            }
            word => statement.push(word),
        }
    }
    None // unclosed block
}

fn server_line(address: &str, params: &[&str]) -> ServerLine {
    ServerLine {
        address: address.to_string(),
        weight: params.iter().find_map(|p| p.strip_prefix("weight=")?.parse().ok()),
        down: params.contains(&"down"),
    }
}

/// `server` text as `$upstream_addr` would print it, without name resolution.
pub(super) fn literal_addresses(server: &str) -> Vec<String> {
    let mut out = vec![server.to_string()];
    if let Ok(addr) = server.parse::<SocketAddr>() {
        out.push(addr.to_string());
    } else if let Ok(ip) = server.parse::<IpAddr>() {
        // NGINX's default port.
        out.push(SocketAddr::new(ip, 80).to_string());
    }
    out.dedup();
    out
}

/// Literal forms plus what a host name resolves to (NGINX logs the address, not the name).
pub(super) fn resolved_addresses(server: &str) -> Vec<String> {
    let mut out = literal_addresses(server);
    if server.starts_with("unix:") || server.parse::<SocketAddr>().is_ok() {
        return out;
    }
    let with_port = if server.contains(':') { server.to_string() } else { format!("{server}:80") };
    if let Ok(addrs) = with_port.to_socket_addrs() {
        out.extend(addrs.map(|a| a.to_string()));
    }
    out
}
