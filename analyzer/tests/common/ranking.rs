//! Ranking metrics of anomaly scores against labels, as scikit-learn
//! computes them (the tests compare against it where it runs).

/// Average precision of `scores` ranking the `positive` points, as
/// scikit-learn's `average_precision_score` computes it: precision at each
/// distinct score (ties form one step) weighted by the recall gained there.
pub fn average_precision(scores: &[f64], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let total = positive.iter().filter(|p| **p).count() as f64;
    let (mut tp, mut seen, mut ap, mut recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            tp += f64::from(u8::from(positive[order[j]]));
            seen += 1.0;
            j += 1;
        }
        let r = tp / total;
        ap += (r - recall) * (tp / seen);
        recall = r;
        i = j;
    }
    ap
}

/// Area under the ROC curve: the chance that a random anomalous point
/// scores above a random normal one (ties count half), from average ranks.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut rank = vec![0.0; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j < order.len() && scores[order[j]] == scores[order[i]] {
            j += 1;
        }
        // Ranks i+1..=j share their mean.
        let mean = (i + 1 + j) as f64 / 2.0;
        for k in &order[i..j] {
            rank[*k] = mean;
        }
        i = j;
    }
    let pos = positive.iter().filter(|p| **p).count() as f64;
    let neg = scores.len() as f64 - pos;
    let rank_sum: f64 = rank
        .iter()
        .zip(positive)
        .filter(|(_, p)| **p)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}
