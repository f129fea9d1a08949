//! Training losses of the multi-task heads: BCE-with-logits masked on missing labels
//! (classification, labels `−1/0/1` with 0 = missing, as pretrain-gnns) and MSE on standardised
//! targets (regression, NaN = missing).

use tch::{Kind, Reduction, Tensor};

use super::ModelError;

/// Per-element BCE-with-logits against `(y + 1) / 2`, and the mask of labels that are present.
fn bce_elements(logits: &Tensor, labels: &Tensor) -> Result<(Tensor, Tensor), ModelError> {
    if logits.size() != labels.size() {
        return Err(ModelError::Shape(format!(
            "logits {:?} vs labels {:?}",
            logits.size(),
            labels.size()
        )));
    }
    let target = labels.f_add_scalar(1.0)?.f_div_scalar(2.0)?;
    let loss = logits.f_binary_cross_entropy_with_logits::<Tensor>(
        &target,
        None,
        None,
        Reduction::None,
    )?;
    let valid = labels.f_ne(0.0)?.f_to_kind(loss.kind())?;
    Ok((loss.f_mul(&valid)?, valid))
}

/// Mean BCE over the present labels of a batch (0 when none is present).
pub fn masked_bce_with_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor, ModelError> {
    let (loss, valid) = bce_elements(logits, labels)?;
    Ok(loss
        .f_sum(Kind::Float)?
        .f_div(&valid.f_sum(Kind::Float)?.f_clamp_min(1.0)?)?)
}

/// `[B]` per-sample BCE, averaged over each sample's present labels (MolPeg scores).
pub fn masked_bce_per_sample(logits: &Tensor, labels: &Tensor) -> Result<Tensor, ModelError> {
    let (loss, valid) = bce_elements(logits, labels)?;
    let count = valid
        .f_sum_dim_intlist(1, false, Kind::Float)?
        .f_clamp_min(1.0)?;
    Ok(loss
        .f_sum_dim_intlist(1, false, Kind::Float)?
        .f_div(&count)?)
}

/// Per-task mean and standard deviation of the training targets, ignoring missing (NaN) values.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    /// Per-task mean.
    pub mean: Vec<f64>,
    /// Per-task standard deviation (population; 1 where a task is constant or empty).
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Fits on training target rows (all of the same length).
    pub fn fit(rows: &[&[f32]]) -> Result<Self, ModelError> {
        let t = rows.first().map_or(0, |r| r.len());
        if rows.iter().any(|r| r.len() != t) {
            return Err(ModelError::Shape(
                "target rows have different lengths".into(),
            ));
        }
        let (mut mean, mut std) = (vec![0.0; t], vec![1.0; t]);
        for task in 0..t {
            let vals: Vec<f64> = rows
                .iter()
                .map(|r| f64::from(r[task]))
                .filter(|v| !v.is_nan())
                .collect();
            if vals.is_empty() {
                continue;
            }
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - m).powi(2)).sum::<f64>() / vals.len() as f64;
            mean[task] = m;
            if var > 0.0 {
                std[task] = var.sqrt();
            }
        }
        Ok(Self { mean, std })
    }

    fn stats(&self, like: &Tensor) -> Result<(Tensor, Tensor), ModelError> {
        let opts = (Kind::Float, like.device());
        let m = Tensor::f_from_slice(&self.mean)?.f_to_dtype(opts.0, false, false)?;
        let s = Tensor::f_from_slice(&self.std)?.f_to_dtype(opts.0, false, false)?;
        Ok((m.f_to_device(opts.1)?, s.f_to_device(opts.1)?))
    }

    /// `(y − mean) / std`, task-wise, for `[B, T]` targets.
    pub fn transform(&self, y: &Tensor) -> Result<Tensor, ModelError> {
        let (m, s) = self.stats(y)?;
        Ok(y.f_sub(&m)?.f_div(&s)?)
    }

    /// `z·std + mean`, task-wise: predictions back in target units.
    pub fn inverse(&self, z: &Tensor) -> Result<Tensor, ModelError> {
        let (m, s) = self.stats(z)?;
        Ok(z.f_mul(&s)?.f_add(&m)?)
    }
}

/// Per-element squared error against the present (non-NaN) targets, and their mask.
fn mse_elements(pred: &Tensor, target: &Tensor) -> Result<(Tensor, Tensor), ModelError> {
    if pred.size() != target.size() {
        return Err(ModelError::Shape(format!(
            "predictions {:?} vs targets {:?}",
            pred.size(),
            target.size()
        )));
    }
    let valid = target.f_isnan()?.f_logical_not()?.f_to_kind(pred.kind())?;
    let safe_target = target.f_nan_to_num(0.0, None, None)?;
    let sq = pred.f_sub(&safe_target)?.f_square()?.f_mul(&valid)?;
    Ok((sq, valid))
}

/// Mean squared error over present (non-NaN) standardised targets (0 when none is present).
pub fn masked_mse(pred: &Tensor, target: &Tensor) -> Result<Tensor, ModelError> {
    let (sq, valid) = mse_elements(pred, target)?;
    Ok(sq
        .f_sum(Kind::Float)?
        .f_div(&valid.f_sum(Kind::Float)?.f_clamp_min(1.0)?)?)
}

/// `[B]` per-sample squared error, averaged over each sample's present targets (MolPeg scores).
pub fn masked_mse_per_sample(pred: &Tensor, target: &Tensor) -> Result<Tensor, ModelError> {
    let (sq, valid) = mse_elements(pred, target)?;
    let count = valid
        .f_sum_dim_intlist(1, false, Kind::Float)?
        .f_clamp_min(1.0)?;
    Ok(sq.f_sum_dim_intlist(1, false, Kind::Float)?.f_div(&count)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bce_ignores_missing_labels() {
        let logits = Tensor::from_slice(&[0.0f32, 2.0, -1.0, 5.0]).view([2, 2]);
        let labels = Tensor::from_slice(&[1.0f32, 0.0, -1.0, 0.0]).view([2, 2]);
        let loss = f64::try_from(masked_bce_with_logits(&logits, &labels).unwrap()).unwrap();
        let expect = ((2f64).ln() + (1.0 + (-1f64).exp()).ln()) / 2.0;
        assert!((loss - expect).abs() < 1e-6, "{loss} vs {expect}");
        let per = Vec::<f32>::try_from(masked_bce_per_sample(&logits, &labels).unwrap()).unwrap();
        assert!((f64::from(per[0]) - 2f64.ln()).abs() < 1e-6);
        assert!(masked_bce_with_logits(&logits, &labels.view([4])).is_err());
    }

    #[test]
    fn mse_on_standardised_targets() {
        let rows: Vec<&[f32]> = vec![&[1.0, f32::NAN], &[3.0, 2.0]];
        let st = Standardizer::fit(&rows).unwrap();
        assert_eq!(st.mean, vec![2.0, 2.0]);
        assert_eq!(st.std, vec![1.0, 1.0]);
        let y = Tensor::from_slice(&[1.0f32, f32::NAN, 3.0, 2.0]).view([2, 2]);
        let z = st.transform(&y).unwrap();
        let loss = f64::try_from(masked_mse(&z.zeros_like(), &z).unwrap()).unwrap();
        assert!((loss - 2.0 / 3.0).abs() < 1e-6, "{loss}");
        let per =
            Vec::<f32>::try_from(masked_mse_per_sample(&z.zeros_like(), &z).unwrap()).unwrap();
        assert!(
            (per[0] - 1.0).abs() < 1e-6 && (per[1] - 0.5).abs() < 1e-6,
            "{per:?}"
        );
        let back = st.inverse(&z.nan_to_num(0.0, None, None)).unwrap();
        assert_eq!(Vec::<f32>::try_from(back.view([4])).unwrap()[2], 3.0);
    }
}
