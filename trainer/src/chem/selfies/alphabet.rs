//! The fixed tables of SELFIES version 2 (`selfies` 2.2.0): the chemical elements, the aromatic
//! valences the kekuliser uses, the default semantic constraints (bonding capacities), the
//! sixteen-symbol index alphabet that encodes branch and ring lengths, and the splitting of a
//! SELFIES string into its symbols.

use super::SelfiesError;

/// Every element symbol SMILES and SELFIES accept (the package's `ELEMENTS`), capitalised.
pub const ELEMENTS: [&str; 114] = [
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl",
    "Ar", "K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As",
    "Se", "Br", "Kr", "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In",
    "Sn", "Sb", "Te", "I", "Xe", "Cs", "Ba", "Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg",
    "Tl", "Pb", "Bi", "Po", "At", "Rn", "Fr", "Ra", "Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg",
    "Cn", "Fl", "Lv", "La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm",
    "Yb", "Lu", "Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No",
    "Lr",
];

/// The SMILES organic subset: atoms written without brackets (implicit hydrogens).
pub const ORGANIC_SUBSET: [&str; 10] = ["B", "C", "N", "O", "S", "P", "F", "Cl", "Br", "I"];

/// The sixteen symbols that write a branch or ring length in base 16, most significant first.
pub const INDEX_ALPHABET: [&str; 16] = [
    "[C]",
    "[Ring1]",
    "[Ring2]",
    "[Branch1]",
    "[=Branch1]",
    "[#Branch1]",
    "[Branch2]",
    "[=Branch2]",
    "[#Branch2]",
    "[O]",
    "[N]",
    "[=N]",
    "[=C]",
    "[#C]",
    "[S]",
    "[P]",
];

/// The capitalised element `symbol` as a `'static` string, if it is an element.
pub fn element(symbol: &str) -> Option<&'static str> {
    ELEMENTS.iter().copied().find(|e| *e == symbol)
}

/// Whether `element` is in the SMILES organic subset.
pub fn is_organic(element: &str) -> bool {
    ORGANIC_SUBSET.contains(&element)
}

/// Whether the lower-case `symbol` is an aromatic SMILES element (`b c n o p s se te as si al`).
pub fn is_aromatic_symbol(symbol: &str) -> bool {
    matches!(
        symbol,
        "b" | "al" | "c" | "si" | "n" | "p" | "as" | "o" | "s" | "se" | "te"
    )
}

/// The valences an aromatic atom of `element` may have (`AROMATIC_VALENCES`), if it may be
/// aromatic at all.
pub fn aromatic_valences(element: &str) -> Option<&'static [i64]> {
    Some(match element {
        "B" | "Al" => &[3],
        "C" | "Si" => &[4],
        "N" | "P" | "As" => &[3, 5],
        "O" | "S" | "Se" | "Te" => &[2, 4],
        _ => return None,
    })
}

/// Valence electrons of the elements that may be aromatic (`VALENCE_ELECTRONS`, new in 2.2).
pub fn valence_electrons(element: &str) -> Option<i64> {
    Some(match element {
        "B" | "Al" => 3,
        "C" | "Si" => 4,
        "N" | "P" | "As" => 5,
        "O" | "S" | "Se" | "Te" => 6,
        _ => return None,
    })
}

/// The bonding capacity of an atom of `element` with `charge` under the default semantic
/// constraints of `selfies` 2.2 (hydrogens not subtracted): 8 for anything the table omits.
pub fn bonding_capacity(element: &str, charge: i64) -> i64 {
    match (element, charge) {
        ("H" | "F" | "Cl" | "Br" | "I", 0) => 1,
        ("B", 0) => 3,
        ("B", 1) => 2,
        ("B", -1) => 4,
        ("O", 0) => 2,
        ("O", 1) => 3,
        ("O", -1) => 1,
        ("N", 0) => 3,
        ("N", 1) => 4,
        ("N", -1) => 2,
        ("C", 0) => 4,
        ("C", 1) => 3,
        ("C", -1) => 3,
        ("P", 0) => 5,
        ("P", 1) => 4,
        ("P", -1) => 6,
        ("S", 0) => 6,
        ("S", 1) => 5,
        ("S", -1) => 5,
        _ => 8,
    }
}

/// The index symbols of `index` (a length minus one): base-16 digits of [`INDEX_ALPHABET`], most
/// significant first; `[C]` for 0.
pub fn index_symbols(index: usize) -> Vec<u8> {
    if index == 0 {
        return vec![0];
    }
    let mut digits = Vec::new();
    let mut rest = index;
    while rest > 0 {
        // `rest % 16` < 16: the cast is exact.
        digits.push((rest % 16) as u8);
        rest /= 16;
    }
    digits.reverse();
    digits
}

/// The value of the index `symbols` (most significant first); a symbol outside
/// [`INDEX_ALPHABET`], or a missing one (`None`, past the end of the string), counts as 0.
pub fn index_value(symbols: &[Option<&str>]) -> usize {
    symbols.iter().fold(0usize, |acc, s| {
        let digit = s
            .and_then(|s| INDEX_ALPHABET.iter().position(|a| *a == s))
            .unwrap_or(0);
        acc.saturating_mul(16).saturating_add(digit)
    })
}

/// Splits a SELFIES string into its symbols, as the package's `split_selfies`: from the first
/// `[`, each symbol runs to the next `]`; a `.` right after a symbol is a symbol of its own.
/// Text before the first `[` is ignored; a `[` never closed is an error.
pub fn split_symbols(selfies: &str) -> Result<Vec<&str>, SelfiesError> {
    let mut symbols = Vec::new();
    let Some(mut left) = selfies.find('[') else {
        return Ok(symbols);
    };
    while left < selfies.len() {
        let right = selfies
            .get(left + 1..)
            .and_then(|rest| rest.find(']'))
            .map(|r| left + 1 + r)
            .ok_or_else(|| SelfiesError::Malformed("hanging '[' bracket".into()))?;
        symbols.push(&selfies[left..=right]);
        left = right + 1;
        if selfies.as_bytes().get(left) == Some(&b'.') {
            symbols.push(".");
            left += 1;
        }
    }
    Ok(symbols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_symbols_are_base_16() {
        assert_eq!(index_symbols(0), vec![0]);
        assert_eq!(index_symbols(5), vec![5]);
        assert_eq!(index_symbols(16), vec![1, 0]);
        assert_eq!(index_symbols(4095), vec![15, 15, 15]);
        let n = 300;
        let syms: Vec<Option<&str>> = index_symbols(n)
            .iter()
            .map(|&d| Some(INDEX_ALPHABET[usize::from(d)]))
            .collect();
        assert_eq!(index_value(&syms), n);
        assert_eq!(index_value(&[Some("[F]"), None]), 0);
        assert_eq!(index_value(&[Some("[Ring1]"), Some("[P]")]), 31);
    }

    #[test]
    fn capacities_are_the_default_constraints() {
        assert_eq!(bonding_capacity("C", 0), 4);
        assert_eq!(bonding_capacity("C", 1), 3);
        assert_eq!(bonding_capacity("P", -1), 6);
        assert_eq!(bonding_capacity("N", 2), 8);
        assert_eq!(bonding_capacity("Na", 0), 8);
    }

    #[test]
    fn splitting_follows_split_selfies() {
        assert_eq!(
            split_symbols("[C][=C][F].[C]").unwrap(),
            vec!["[C]", "[=C]", "[F]", ".", "[C]"]
        );
        assert_eq!(split_symbols("xx[C]").unwrap(), vec!["[C]"]);
        assert_eq!(split_symbols("[C]x]").unwrap(), vec!["[C]", "x]"]);
        assert!(split_symbols("").unwrap().is_empty());
        assert!(matches!(
            split_symbols("[C][C"),
            Err(SelfiesError::Malformed(_))
        ));
    }
}
