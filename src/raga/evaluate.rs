//! Classifier evaluation: accuracy, top-3 accuracy and a confusion matrix.

use serde::Serialize;

/// Evaluation results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Clips evaluated.
    pub clips: usize,
    /// Share whose top raga is right.
    pub top1: f64,
    /// Share with the right raga among the top three.
    pub top3: f64,
    /// Class names, the confusion matrix's row and column order.
    pub ragas: Vec<String>,
    /// `confusion[true][predicted]` counts of top-1 predictions.
    pub confusion: Vec<Vec<usize>>,
}

/// Scores ranked predictions (`predictions[i]` is clip `i`'s ranking,
/// best first) against `truth[i]`. Ragas outside `ragas` count as wrong
/// and are left out of the matrix.
pub fn evaluate(ragas: &[String], truth: &[String], predictions: &[Vec<String>]) -> Evaluation {
    let index = |name: &str| ragas.iter().position(|r| r == name);
    let n = truth.len().min(predictions.len());
    let mut confusion = vec![vec![0usize; ragas.len()]; ragas.len()];
    let (mut top1, mut top3) = (0usize, 0usize);
    for (t, p) in truth.iter().zip(predictions).take(n) {
        if p.first() == Some(t) {
            top1 += 1;
        }
        if p.iter().take(3).any(|x| x == t) {
            top3 += 1;
        }
        if let (Some(ti), Some(pi)) = (index(t), p.first().and_then(|x| index(x))) {
            confusion[ti][pi] += 1;
        }
    }
    Evaluation {
        clips: n,
        top1: top1 as f64 / n.max(1) as f64,
        top3: top3 as f64 / n.max(1) as f64,
        ragas: ragas.to_vec(),
        confusion,
    }
}

impl Evaluation {
    /// The same results with the matrix cut down to the ragas that occur
    /// as truth or as a top-1 prediction (a model may know many more).
    pub fn occurring(&self) -> Evaluation {
        let keep: Vec<usize> = (0..self.ragas.len())
            .filter(|&i| {
                self.confusion[i].iter().any(|&k| k > 0) || self.confusion.iter().any(|r| r[i] > 0)
            })
            .collect();
        Evaluation {
            ragas: keep.iter().map(|&i| self.ragas[i].clone()).collect(),
            confusion: keep
                .iter()
                .map(|&i| keep.iter().map(|&j| self.confusion[i][j]).collect())
                .collect(),
            ..self.clone()
        }
    }

    /// The confusion matrix as CSV: header `true\predicted,RAGA...`, one
    /// row per true raga.
    pub fn confusion_csv(&self) -> String {
        let quote = |s: &str| {
            if s.contains([',', '"']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let mut out = String::from("true\\predicted");
        for r in &self.ragas {
            out.push(',');
            out.push_str(&quote(r));
        }
        out.push('\n');
        for (r, row) in self.ragas.iter().zip(&self.confusion) {
            out.push_str(&quote(r));
            for c in row {
                out.push_str(&format!(",{c}"));
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn occurring_keeps_only_ragas_that_appear() {
        let ragas: Vec<String> = ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect();
        let truth: Vec<String> = vec!["A".into(), "C".into()];
        let pred: Vec<Vec<String>> = vec![vec!["A".into()], vec!["D".into()]];
        let e = evaluate(&ragas, &truth, &pred).occurring();
        assert_eq!(e.ragas, vec!["A", "C", "D"]);
        assert_eq!(
            e.confusion,
            vec![vec![1, 0, 0], vec![0, 0, 1], vec![0, 0, 0]]
        );
        assert_eq!(e.top1, 0.5);
    }

    use super::*;

    #[test]
    fn counts_top1_top3_and_confusions() {
        let ragas: Vec<String> = ["A", "B", "C"].map(String::from).to_vec();
        let truth: Vec<String> = ["A", "B", "C", "A"].map(String::from).to_vec();
        let preds: Vec<Vec<String>> = [
            ["A", "B", "C"],
            ["A", "C", "B"],
            ["B", "A", "C"],
            ["A", "C", "B"],
        ]
        .iter()
        .map(|p| p.map(String::from).to_vec())
        .collect();
        let e = evaluate(&ragas, &truth, &preds);
        assert_eq!(e.top1, 0.5);
        assert_eq!(e.top3, 1.0);
        assert_eq!(e.confusion[0][0], 2);
        assert_eq!(e.confusion[1][0], 1);
        assert_eq!(e.confusion[2][1], 1);
        let csv = e.confusion_csv();
        assert!(csv.starts_with("true\\predicted,A,B,C\nA,2,0,0\n"), "{csv}");
    }
}
