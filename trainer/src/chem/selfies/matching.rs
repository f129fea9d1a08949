//! The perfect matching the kekuliser looks for, step for step as `selfies` finds it
//! (`utils/matching_utils.py`): a greedy maximal matching that takes the nodes with the fewest
//! free neighbours first, then augmenting paths found by breadth-first search from each
//! unmatched node.
//!
//! Which Kekulé structure comes out (and so which SELFIES string) depends on the order in which
//! the unmatched nodes are taken. The package keeps them in a Python `set` of small integers and
//! takes them with `set.pop()`, whose order is CPython's hash-table layout (CPython 3.7 to 3.13:
//! open addressing with linear probes of 9 and perturbation, a table of 8 slots grown ×4 past 60 %
//! fill, `pop` scanning on from a finger). [`PyIntSet`] reproduces that layout for non-negative
//! integers (whose hash is themselves), so that the augmenting paths start where the package's do.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// CPython's `LINEAR_PROBES`.
const LINEAR_PROBES: usize = 9;
/// CPython's `PERTURB_SHIFT`.
const PERTURB_SHIFT: u32 = 5;
/// CPython's `PySet_MINSIZE`.
const MIN_SIZE: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Empty,
    Dummy,
    Key(usize),
}

/// A CPython `set` of non-negative integers, as far as insertion, `discard` and `pop` go.
#[derive(Debug, Clone)]
pub struct PyIntSet {
    table: Vec<Slot>,
    fill: usize,
    used: usize,
    finger: usize,
}

impl PyIntSet {
    /// The set built by `set(keys)` from distinct keys, inserted in order.
    pub fn from_keys(keys: impl IntoIterator<Item = usize>) -> Self {
        let mut set = Self {
            table: vec![Slot::Empty; MIN_SIZE],
            fill: 0,
            used: 0,
            finger: 0,
        };
        for key in keys {
            set.add_new(key);
        }
        set
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    /// The probe sequence of `key` (`hash == key`) in a table of `mask + 1` slots, calling
    /// `visit` on each slot index until it returns true.
    fn probe(mask: usize, key: usize, mut visit: impl FnMut(usize) -> bool) {
        let mut i = key & mask;
        let mut perturb = key;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in i..=i + probes {
                if visit(j) {
                    return;
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i.wrapping_mul(5).wrapping_add(1).wrapping_add(perturb)) & mask;
        }
    }

    /// Adds a key known not to be present (CPython's `set_add_entry` on a table without dummies).
    fn add_new(&mut self, key: usize) {
        let mask = self.mask();
        let mut at = 0;
        let table = &self.table;
        Self::probe(mask, key, |j| {
            at = j;
            table[j] == Slot::Empty
        });
        self.table[at] = Slot::Key(key);
        self.fill += 1;
        self.used += 1;
        if self.fill * 5 >= mask * 3 {
            let minused = if self.used > 50_000 {
                self.used * 2
            } else {
                self.used * 4
            };
            self.resize(minused);
        }
    }

    /// CPython's `set_table_resize`: the smallest power of two above `minused`, entries
    /// re-inserted in old-table order.
    fn resize(&mut self, minused: usize) {
        let mut size = MIN_SIZE;
        while size <= minused {
            size <<= 1;
        }
        let old = std::mem::replace(&mut self.table, vec![Slot::Empty; size]);
        let mask = size - 1;
        for slot in old {
            if let Slot::Key(key) = slot {
                let mut at = 0;
                let table = &self.table;
                Self::probe(mask, key, |j| {
                    at = j;
                    table[j] == Slot::Empty
                });
                self.table[at] = Slot::Key(key);
            }
        }
        self.fill = self.used;
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.used == 0
    }

    /// `set.pop()`: the first key at or after the finger (wrapping round), or `None` when empty.
    pub fn pop(&mut self) -> Option<usize> {
        if self.used == 0 {
            return None;
        }
        let n = self.table.len();
        let mut i = self.finger & self.mask();
        for _ in 0..n {
            if let Slot::Key(key) = self.table[i] {
                self.table[i] = Slot::Dummy;
                self.used -= 1;
                self.finger = i + 1;
                return Some(key);
            }
            i = (i + 1) % n;
        }
        None
    }

    /// `set.discard(key)`.
    pub fn discard(&mut self, key: usize) {
        let mask = self.mask();
        let mut found = None;
        let table = &self.table;
        Self::probe(mask, key, |j| match table[j] {
            Slot::Empty => true,
            Slot::Key(k) if k == key => {
                found = Some(j);
                true
            }
            _ => false,
        });
        if let Some(j) = found {
            self.table[j] = Slot::Dummy;
            self.used -= 1;
        }
    }
}

/// A perfect matching of the undirected `graph` (adjacency lists, no self-loops): `result[i]`
/// is the node matched with `i`; `None` when there is none.
pub fn perfect_matching(graph: &[Vec<usize>]) -> Option<Vec<usize>> {
    let mut matching = greedy_matching(graph)?;
    let mut unmatched = PyIntSet::from_keys((0..graph.len()).filter(|&i| matching[i].is_none()));
    while let Some(root) = unmatched.pop() {
        let path = augmenting_path(graph, root, &matching)?;
        for pair in path.chunks(2) {
            if let [a, b] = *pair {
                matching[a] = Some(b);
                matching[b] = Some(a);
            }
        }
        if let (Some(&first), Some(&last)) = (path.first(), path.last()) {
            unmatched.discard(first);
            unmatched.discard(last);
        }
    }
    matching.into_iter().collect()
}

/// The greedy maximal matching (nodes with fewer free neighbours first, ties by index; each
/// matched with its first free neighbour). `None` only on an inconsistent graph.
fn greedy_matching(graph: &[Vec<usize>]) -> Option<Vec<Option<usize>>> {
    let n = graph.len();
    let mut matching: Vec<Option<usize>> = vec![None; n];
    let mut free: Vec<i64> = graph.iter().map(|a| a.len() as i64).collect();
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> =
        (0..n).map(|i| Reverse((free[i], i))).collect();
    while let Some(Reverse((_, node))) = heap.pop() {
        if matching[node].is_some() || free[node] == 0 {
            continue;
        }
        let mate = graph[node]
            .iter()
            .copied()
            .find(|&i| matching.get(i).is_some_and(Option::is_none))?;
        matching[node] = Some(mate);
        matching[mate] = Some(node);
        for &adj in graph[node].iter().chain(&graph[mate]) {
            let f = free.get_mut(adj)?;
            *f -= 1;
            if matching[adj].is_none() && *f > 0 {
                heap.push(Reverse((*f, adj)));
            }
        }
    }
    Some(matching)
}

/// A path from `root` (unmatched) to another unmatched node alternating unmatched and matched
/// edges, found breadth first; listed from the far end: `[end, p1, m1, p2, …, root]`, in pairs
/// to be matched. `None` when there is none.
fn augmenting_path(
    graph: &[Vec<usize>],
    root: usize,
    matching: &[Option<usize>],
) -> Option<Vec<usize>> {
    let mut parents: Vec<Option<(usize, usize)>> = vec![None; graph.len()];
    // The root's parent entry marks it visited; it is never followed.
    *parents.get_mut(root)? = Some((root, root));
    let mut queue = VecDeque::from([root]);
    let mut other_end = None;
    'search: while let Some(node) = queue.pop_front() {
        for &adj in &graph[node] {
            match *matching.get(adj)? {
                None => {
                    if adj != root {
                        parents[adj] = Some((node, adj));
                        other_end = Some(adj);
                        break 'search;
                    }
                }
                Some(mate) => {
                    if parents.get(mate)?.is_none() {
                        parents[mate] = Some((node, adj));
                        queue.push_back(mate);
                    }
                }
            }
        }
    }
    let mut node = other_end?;
    let mut path = Vec::new();
    while node != root {
        let (parent, via) = parents[node]?;
        path.push(via);
        path.push(parent);
        node = parent;
        if path.len() > 2 * graph.len() + 2 {
            return None;
        }
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_int_sets_pop_in_table_order() {
        // Keys below the table size sit in their own slots: popped in ascending order.
        let mut s = PyIntSet::from_keys([3, 1, 2]);
        assert_eq!(
            (s.pop(), s.pop(), s.pop(), s.pop()),
            (Some(1), Some(2), Some(3), None)
        );
        // 9 & 7 == 1 comes before 4; 17 collides with 9 and is perturbed to slot 6.
        let mut s = PyIntSet::from_keys([4, 9, 17]);
        assert_eq!(s.pop(), Some(9));
        assert_eq!(s.pop(), Some(4));
        assert_eq!(s.pop(), Some(17));
        // The finger: after popping slot 1, a discard and the scan goes on from slot 2.
        let mut s = PyIntSet::from_keys([0, 1, 5, 6]);
        assert_eq!(s.pop(), Some(0));
        s.discard(5);
        assert_eq!(s.pop(), Some(1));
        assert_eq!(s.pop(), Some(6));
        assert!(s.is_empty());
        // Five keys grow the table to 32 slots: 33 lands in slot 1, before 2.
        let mut s = PyIntSet::from_keys([2, 33, 40, 41, 42]);
        assert_eq!(s.pop(), Some(33));
        assert_eq!(s.pop(), Some(2));
    }

    #[test]
    fn matches_rings_and_refuses_odd_ones() {
        // Benzene as a 6-cycle.
        let ring: Vec<Vec<usize>> = (0..6).map(|i| vec![(i + 5) % 6, (i + 1) % 6]).collect();
        let m = perfect_matching(&ring).unwrap();
        for (i, &j) in m.iter().enumerate() {
            assert_eq!(m[j], i);
            assert!(ring[i].contains(&j));
        }
        // A path of four whose greedy matching takes the middle edge first needs an augmenting
        // path: 0-1-2-3 with node 1 and 2 of degree 2.
        let path = vec![vec![1], vec![0, 2], vec![1, 3], vec![2]];
        assert_eq!(perfect_matching(&path).unwrap(), vec![1, 0, 3, 2]);
        let triangle = vec![vec![1, 2], vec![0, 2], vec![0, 1]];
        assert!(perfect_matching(&triangle).is_none());
    }
}
