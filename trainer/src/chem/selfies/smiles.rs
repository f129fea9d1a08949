//! SMILES in the package's own terms (`utils/smiles_utils.py`): a reader that builds a
//! [`Graph`] in the string's atom order, keeping where each ring-bond digit and branch stands,
//! and the writer the decoder ends with (depth first along each atom's out-bonds, ring numbers
//! handed out in order of first use and never reused).
//!
//! The reader accepts what the package's does — the organic subset, bracket atoms
//! `[isotope element @|@@ Hn charge :class]`, bonds `- = # : / \`, branches, ring numbers `0`–`9`
//! and `%nn`, dots — and refuses what it refuses (`*`, `$`, other chirality classes, a ring bond
//! across a dot or between bonded atoms, mismatched ring bonds), so that a string either side
//! encodes the other does too.

use super::SelfiesError;
use super::alphabet::{element, is_aromatic_symbol, is_organic};
use super::graph::{AROMATIC, Atom, Graph, Order2};

/// Deepest branch nesting read (the encoder recurses once per level).
pub const MAX_BRANCH_DEPTH: usize = 512;

/// A bond character's order and stereo mark (`smiles_to_bond`): no character is a single bond.
pub fn bond_of(ch: Option<u8>) -> (Order2, Option<u8>) {
    match ch {
        Some(b'=') => (4, None),
        Some(b'#') => (6, None),
        Some(b':') => (AROMATIC, None),
        Some(c @ (b'/' | b'\\')) => (2, Some(c)),
        _ => (2, None),
    }
}

fn is_bond_char(c: u8) -> bool {
    matches!(c, b'-' | b'/' | b'\\' | b':' | b'=' | b'#')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Atom,
    Open,
    Close,
    Ring,
    Dot,
}

/// One SMILES token: a symbol with the bond character before it.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    bond: Option<u8>,
    kind: Kind,
    text: &'a str,
}

fn parse_error(smiles: &str, why: impl std::fmt::Display, at: usize) -> SelfiesError {
    SelfiesError::Parse(format!("{why} at position {at} of {smiles:?}"))
}

/// Splits `smiles` into tokens (`tokenize_smiles`).
fn tokenize(smiles: &str) -> Result<Vec<Token<'_>>, SelfiesError> {
    let b = smiles.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'.' {
            tokens.push(Token {
                bond: None,
                kind: Kind::Dot,
                text: ".",
            });
            i += 1;
            continue;
        }
        let bond = if is_bond_char(b[i]) {
            i += 1;
            Some(b[i - 1])
        } else {
            None
        };
        let Some(&c) = b.get(i) else {
            return Err(parse_error(smiles, "hanging bond", i - 1));
        };
        let (kind, end) = match c {
            c if c.is_ascii_alphabetic() => {
                let two = b.get(i..i + 2);
                let end = if two == Some(b"Br") || two == Some(b"Cl") {
                    i + 2
                } else {
                    i + 1
                };
                (Kind::Atom, end)
            }
            b'[' => {
                let close = b[i + 1..]
                    .iter()
                    .position(|&x| x == b']')
                    .ok_or_else(|| parse_error(smiles, "hanging bracket [", i))?;
                (Kind::Atom, i + 1 + close + 1)
            }
            b'(' | b')' => {
                if bond.is_some() {
                    return Err(parse_error(smiles, "hanging bond", i - 1));
                }
                (if c == b'(' { Kind::Open } else { Kind::Close }, i + 1)
            }
            c if c.is_ascii_digit() => (Kind::Ring, i + 1),
            b'%' => {
                let ok = b
                    .get(i + 1..i + 3)
                    .is_some_and(|d| d.iter().all(u8::is_ascii_digit));
                if !ok {
                    return Err(parse_error(smiles, "invalid ring number", i));
                }
                (Kind::Ring, i + 3)
            }
            _ => {
                return Err(parse_error(
                    smiles,
                    format!(
                        "unrecognized symbol {:?}",
                        smiles
                            .get(i..)
                            .and_then(|s| s.chars().next())
                            .unwrap_or('?')
                    ),
                    i,
                ));
            }
        };
        // Every boundary above is next to an ASCII byte.
        let text = smiles
            .get(i..end)
            .ok_or_else(|| parse_error(smiles, "invalid character", i))?;
        tokens.push(Token { bond, kind, text });
        i = end;
    }
    Ok(tokens)
}

/// Reads one atom symbol (`smiles_to_atom`): an organic-subset or aromatic letter, or a bracket
/// atom; `None` when it is neither.
fn read_atom(symbol: &str) -> Option<Atom> {
    if let Some(inner) = symbol.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return read_bracket_atom(inner);
    }
    if is_organic(symbol) {
        return Some(Atom::organic(element(symbol)?, false));
    }
    if is_aromatic_symbol(symbol) {
        return Some(Atom::organic(element(&capitalize(symbol))?, true));
    }
    None
}

fn capitalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Counts the ASCII digits of `b` from `at`.
fn digits(b: &[u8], at: usize) -> usize {
    b.get(at..).map_or(0, |rest| {
        rest.iter().take_while(|c| c.is_ascii_digit()).count()
    })
}

fn number<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// `[isotope element chirality H-count charge :class]` without the brackets, as the package's
/// regular expression reads it (its greedy choices never need to back off but for a charge
/// sign followed by digits).
fn read_bracket_atom(inner: &str) -> Option<Atom> {
    let b = inner.as_bytes();
    let mut i = 0;
    let n = digits(b, i);
    let isotope = if n > 0 {
        Some(number::<u64>(&b[i..i + n])?)
    } else {
        None
    };
    i += n;
    let first = *b.get(i)?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    let mut elen = 1;
    if b.get(i + 1).is_some_and(u8::is_ascii_lowercase) {
        elen = 2;
    }
    let symbol = &inner[i..i + elen];
    i += elen;
    let at = b
        .get(i..)
        .map_or(0, |r| r.iter().take_while(|&&c| c == b'@').count());
    let chirality = match at {
        0 => None,
        1 => Some(1),
        2 => Some(2),
        _ => return None,
    };
    i += at;
    let mut h_count = 0u32;
    if b.get(i) == Some(&b'H') {
        i += 1;
        if let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
            h_count = u32::from(d - b'0');
            i += 1;
        } else {
            h_count = 1;
        }
    }
    let mut charge = 0i64;
    if let Some(&sign) = b.get(i).filter(|&&c| c == b'+' || c == b'-') {
        let signum = if sign == b'+' { 1 } else { -1 };
        let n = digits(b, i + 1);
        if n > 0 {
            charge = signum * number::<i64>(&b[i + 1..i + 1 + n])?;
            i += 1 + n;
        } else {
            let run = b[i..].iter().take_while(|&&c| c == sign).count();
            charge = signum * run as i64;
            i += run;
        }
    }
    if b.get(i) == Some(&b':') {
        let n = digits(b, i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
    }
    if i != b.len() {
        return None;
    }
    let aromatic = symbol.bytes().all(|c| c.is_ascii_lowercase()) && is_aromatic_symbol(symbol);
    Some(Atom {
        element: element(&capitalize(symbol))?,
        aromatic,
        isotope,
        chirality,
        h_count: Some(h_count),
        charge,
    })
}

/// An open ring-bond digit.
struct OpenRing<'a> {
    label: &'a str,
    bond: Option<u8>,
    atom: usize,
    pos: usize,
    at: usize,
}

/// Reads `smiles` into a graph in its own atom order (`smiles_to_mol`).
pub fn read(smiles: &str) -> Result<Graph, SelfiesError> {
    if smiles.is_empty() {
        return Err(parse_error(smiles, "empty SMILES", 0));
    }
    let tokens = tokenize(smiles)?;
    let mut g = Graph::default();
    let mut rest = &tokens[..];
    let mut offset = 0;
    while !rest.is_empty() {
        let used = read_fragment(smiles, &mut g, rest, offset)?;
        rest = &rest[used..];
        offset += used;
    }
    Ok(g)
}

/// Reads tokens up to and including the next dot; returns how many were read.
fn read_fragment(
    smiles: &str,
    g: &mut Graph,
    tokens: &[Token<'_>],
    offset: usize,
) -> Result<usize, SelfiesError> {
    let mut prev: Vec<Option<usize>> = vec![None];
    let mut branches = 0usize;
    let mut rings: Vec<OpenRing<'_>> = Vec::new();
    let mut chain_start = true;
    let mut read = 0;
    for tok in tokens {
        read += 1;
        let at = offset + read - 1;
        let prev_atom = prev.last().copied().flatten();
        match tok.kind {
            Kind::Dot => break,
            Kind::Atom => {
                let atom = read_atom(tok.text).ok_or_else(|| {
                    parse_error(smiles, format!("invalid atom symbol {:?}", tok.text), at)
                })?;
                let aromatic = atom.aromatic;
                let index = g.add_atom(atom, prev_atom.is_none());
                if let Some(p) = prev_atom {
                    let (mut order, stereo) = bond_of(tok.bond);
                    if g.atoms[p].aromatic && aromatic && tok.bond.is_none() {
                        order = AROMATIC;
                    }
                    g.add_bond(p, index, order, stereo);
                }
                if let Some(top) = prev.last_mut() {
                    *top = Some(index);
                }
                chain_start = false;
            }
            _ if chain_start => {
                return Err(parse_error(smiles, "SMILES chain begins with non-atom", at));
            }
            Kind::Open => {
                branches += 1;
                if branches > MAX_BRANCH_DEPTH {
                    return Err(parse_error(
                        smiles,
                        format!("branches nested deeper than {MAX_BRANCH_DEPTH}"),
                        at,
                    ));
                }
                prev.push(prev_atom);
                chain_start = true;
            }
            Kind::Close => {
                if branches == 0 {
                    return Err(parse_error(smiles, "hanging ')' bracket", at));
                }
                branches -= 1;
                prev.pop();
            }
            Kind::Ring => {
                let atom =
                    prev_atom.ok_or_else(|| parse_error(smiles, "ring bond before an atom", at))?;
                match rings.iter().position(|r| r.label == tok.text) {
                    None => {
                        let pos = g.add_placeholder(atom);
                        rings.push(OpenRing {
                            label: tok.text,
                            bond: tok.bond,
                            atom,
                            pos,
                            at,
                        });
                    }
                    Some(k) => {
                        let open = rings.remove(k);
                        close_ring(smiles, g, &open, tok, atom)?;
                    }
                }
            }
        }
    }
    if g.is_empty() {
        return Err(parse_error(smiles, "empty SMILES fragment", offset));
    }
    if branches > 0 {
        return Err(parse_error(smiles, "hanging '(' bracket", offset));
    }
    if let Some(open) = rings.last() {
        return Err(parse_error(
            smiles,
            format!("hanging ring number {:?}", open.label),
            open.at,
        ));
    }
    Ok(read)
}

/// Closes the ring opened at `open` on `ratom` (`_make_ring_bonds`).
fn close_ring(
    smiles: &str,
    g: &mut Graph,
    open: &OpenRing<'_>,
    close: &Token<'_>,
    ratom: usize,
) -> Result<(), SelfiesError> {
    let latom = open.atom;
    if latom == ratom {
        return Err(parse_error(
            smiles,
            "ring bond from an atom to itself",
            open.at,
        ));
    }
    if g.has_bond(latom, ratom) {
        return Err(parse_error(
            smiles,
            "ring bond specified between already-bonded atoms",
            open.at,
        ));
    }
    let (l, r) = (open.bond, close.bond);
    let stereo = |c: Option<u8>| matches!(c, Some(b'/' | b'\\'));
    let compatible = l == r || l.is_none() || r.is_none() || (stereo(l) && stereo(r));
    if !compatible {
        return Err(parse_error(smiles, "mismatched ring bonds", open.at));
    }
    let (lorder, lstereo) = bond_of(l);
    let (rorder, rstereo) = bond_of(r);
    let order = if g.atoms[latom].aromatic && g.atoms[ratom].aromatic && l.is_none() && r.is_none()
    {
        AROMATIC
    } else {
        lorder.max(rorder)
    };
    g.add_ring_bond(
        (latom, lstereo, Some(open.pos)),
        (ratom, rstereo, None),
        order,
    );
    Ok(())
}

/// A bond's SMILES character (`bond_to_smiles`): the stereo mark or nothing for a single bond,
/// `=` or `#`.
pub fn bond_char(order: Order2, stereo: Option<u8>) -> Result<&'static str, SelfiesError> {
    Ok(match (order, stereo) {
        (2, Some(b'/')) => "/",
        (2, Some(b'\\')) => "\\",
        (2, _) => "",
        (4, _) => "=",
        (6, _) => "#",
        _ => {
            return Err(SelfiesError::Internal(format!(
                "bond of order {} has no SMILES character",
                order as f64 / 2.0
            )));
        }
    })
}

/// Writes a kekulised graph as SMILES in its own order (`mol_to_smiles`).
pub fn write(g: &Graph) -> Result<String, SelfiesError> {
    let mut out = String::new();
    let mut ring_numbers: Vec<((usize, usize), usize)> = Vec::new();
    for (k, &root) in g.roots.iter().enumerate() {
        if k > 0 {
            out.push('.');
        }
        // (atom, next out-bond, closes a branch)
        let mut stack: Vec<(usize, usize, bool)> = vec![(root, 0, false)];
        while let Some(&mut (curr, ref mut next, closes)) = stack.last_mut() {
            let out_bonds = &g.adj[curr];
            if *next == 0 {
                g.atoms[curr].write_smiles(&mut out, true);
            }
            if *next < out_bonds.len() {
                let i = *next;
                *next += 1;
                let id = out_bonds[i]
                    .ok_or_else(|| SelfiesError::Internal("unclosed ring bond".into()))?;
                let bond = &g.bonds[id];
                if bond.ring {
                    out.push_str(bond_char(g.order(bond), bond.stereo)?);
                    let ends = (bond.src.min(bond.dst), bond.src.max(bond.dst));
                    let number = match ring_numbers.iter().find(|(e, _)| *e == ends) {
                        Some(&(_, n)) => n,
                        None => {
                            let n = ring_numbers.len() + 1;
                            ring_numbers.push((ends, n));
                            n
                        }
                    };
                    if number >= 10 {
                        out.push('%');
                    }
                    out.push_str(&number.to_string());
                } else {
                    let branch = i + 1 < out_bonds.len();
                    if branch {
                        out.push('(');
                    }
                    out.push_str(bond_char(g.order(bond), bond.stereo)?);
                    stack.push((bond.dst, 0, branch));
                }
            } else {
                stack.pop();
                if closes {
                    out.push(')');
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bracket_atoms_read_like_the_package() {
        let a = read_atom("[13CH3+]").unwrap();
        assert_eq!(
            (a.element, a.isotope, a.h_count, a.charge),
            ("C", Some(13), Some(3), 1)
        );
        let a = read_atom("[nH]").unwrap();
        assert!(a.aromatic && a.element == "N" && a.h_count == Some(1));
        let a = read_atom("[O--]").unwrap();
        assert_eq!(a.charge, -2);
        let a = read_atom("[Fe+3:12]").unwrap();
        assert_eq!((a.element, a.charge), ("Fe", 3));
        let a = read_atom("[C@@H]").unwrap();
        assert_eq!(a.chirality, Some(2));
        // Lower case that is not an aromatic element reads as the element, not aromatic.
        let a = read_atom("[cl-]").unwrap();
        assert!(!a.aromatic && a.element == "Cl");
        for bad in [
            "[C@@@H]", "[C@TH1]", "[Xx]", "[CH12]", "[C+-]", "[*]", "[C:]", "Na", "X",
        ] {
            assert!(read_atom(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn rings_keep_their_place_among_the_out_bonds() {
        // Atom 1: ring digit 1 (to atom 4), then the chain bond 1→2.
        let g = read("CC1CCC1").unwrap();
        let out: Vec<(usize, bool)> = g.adj[1]
            .iter()
            .map(|b| {
                let b = &g.bonds[b.unwrap()];
                (b.dst, b.ring)
            })
            .collect();
        assert_eq!(out, vec![(4, true), (2, false)]);
        assert_eq!(write(&g).unwrap(), "CC1CCC1");
    }

    #[test]
    fn bad_smiles_are_errors() {
        for bad in [
            "", "C1CC", "C(C", "CC)", "C*", "C$C", "C1C1", "C=1CC#1", ".C", "C11", "(C)", "C=",
            "C%1", "c1cccc1X", "[C",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        // The package accepts an empty fragment after the first and a bond before a root.
        assert_eq!(read("C..C").unwrap().roots, vec![0, 1]);
        assert_eq!(read("=CC").unwrap().len(), 2);
        let deep = format!("C{}", "(C".repeat(600) + &")".repeat(600));
        assert!(read(&deep).is_err());
    }
}
