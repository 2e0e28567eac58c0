//! Time-ordered 64-bit ids: `unix_millis << 16 | counter`. New rows append to
//! the end of the primary-key B-tree (no scattered page writes), ids sort by
//! creation time, and they never repeat even if the clock steps back.

/// Generates increasing ids; owned by the one thread that inserts.
#[derive(Debug)]
pub struct IdGenerator {
    last: i64,
}

impl IdGenerator {
    /// Starts after `max_existing` (the largest id already stored, or 0).
    pub fn after(max_existing: i64) -> Self {
        Self { last: max_existing }
    }

    /// The next id.
    pub fn next_id(&mut self, now_millis: i64) -> i64 {
        let candidate = now_millis << 16;
        self.last = candidate.max(self.last + 1);
        self.last
    }
}

/// The smallest id that can have been created at or after `millis`.
pub fn first_id_at(millis: i64) -> i64 {
    millis.max(0) << 16
}

/// The creation time encoded in an id.
pub fn millis_of(id: i64) -> i64 {
    id >> 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_within_a_millisecond_and_when_the_clock_steps_back() {
        let mut g = IdGenerator::after(0);
        let a = g.next_id(1_000);
        let b = g.next_id(1_000);
        let c = g.next_id(999);
        assert!(a < b && b < c);
        assert_eq!(millis_of(a), 1_000);
        assert!(first_id_at(1_000) <= a && first_id_at(1_001) > b);
    }
}
