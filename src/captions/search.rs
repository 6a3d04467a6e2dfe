//! Raga search for pickers: every raga whose name or alias matches a
//! query as it is typed, with spellings folded as the lookup folds them.

use super::fold::{edit_distance, fold, loose_key};
use super::vocab::{Raga, Vocabulary};

impl Vocabulary {
    /// Up to `limit` ragas for `query`, best first: a name or alias that
    /// is the query (spellings folded), then that starts with it, then
    /// that holds it, then within a few edits of it. An empty query lists
    /// the ragas in vocabulary order.
    pub fn search_ragas(&self, query: &str, limit: usize) -> Vec<&Raga> {
        let q = loose_key(query);
        let plain = fold(query);
        if q.is_empty() {
            return self.ragas.iter().take(limit).collect();
        }
        let mut ranked: Vec<(usize, usize, &Raga)> = self
            .ragas
            .iter()
            .filter_map(|r| {
                let rank = std::iter::once(&r.name)
                    .chain(&r.aliases)
                    .filter_map(|n| {
                        let (key, folded) = (loose_key(n), fold(n));
                        if key == q {
                            Some(0)
                        } else if folded.starts_with(&plain) || key.starts_with(&q) {
                            Some(1)
                        } else if folded.contains(&plain) || key.contains(&q) {
                            Some(2)
                        } else {
                            let d = edit_distance(&key, &q);
                            (q.len() >= 4 && d <= q.len() / 4 + 1).then_some(3 + d)
                        }
                    })
                    .min()?;
                Some((rank, r.name.len(), r))
            })
            .collect();
        ranked.sort_by(|a, b| (a.0, a.1, &a.2.name).cmp(&(b.0, b.1, &b.2.name)));
        ranked.into_iter().take(limit).map(|(_, _, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::captions::Vocabulary;

    fn names(q: &str) -> Vec<String> {
        let v = Vocabulary::builtin();
        v.search_ragas(q, 5)
            .into_iter()
            .map(|r| r.name.clone())
            .collect()
    }

    #[test]
    fn spellings_and_aliases_find_the_raga() {
        assert_eq!(names("Shankarabharana")[0], "Shankarabharanam");
        assert_eq!(names("kalyan")[0], "Kalyani");
        assert!(
            names("Yaman").contains(&"Kalyani".to_string()),
            "{:?}",
            names("Yaman")
        );
        assert!(
            names("tod").contains(&"Todi".to_string()),
            "{:?}",
            names("tod")
        );
        assert!(names("hindolm").contains(&"Hindolam".to_string()));
        assert!(names("zzzzqqq").is_empty());
        assert_eq!(names("").len(), 5);
    }
}
