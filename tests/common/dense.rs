//! A tiny independent `f64` dense-matrix toolkit (naive products, Gaussian elimination; no
//! faer, no Candle kernels) and seeded random matrices: the reference side of the tests. The
//! crate's own unit tests include this file too.
#![allow(dead_code)]

use candle_core::{Device, Tensor};

/// Row-major `f64` matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct M {
    pub r: usize,
    pub c: usize,
    pub d: Vec<f64>,
}

impl M {
    pub fn zeros(r: usize, c: usize) -> Self {
        Self {
            r,
            c,
            d: vec![0.0; r * c],
        }
    }
    pub fn from_fn(r: usize, c: usize, mut f: impl FnMut(usize, usize) -> f64) -> Self {
        let mut m = Self::zeros(r, c);
        for i in 0..r {
            for j in 0..c {
                m.d[i * c + j] = f(i, j);
            }
        }
        m
    }
    pub fn at(&self, i: usize, j: usize) -> f64 {
        self.d[i * self.c + j]
    }
    pub fn t(&self) -> M {
        M::from_fn(self.c, self.r, |i, j| self.at(j, i))
    }
    /// Naive triple loop product.
    pub fn mul(&self, o: &M) -> M {
        assert_eq!(self.c, o.r);
        let mut out = M::zeros(self.r, o.c);
        for i in 0..self.r {
            for k in 0..self.c {
                let a = self.at(i, k);
                for j in 0..o.c {
                    out.d[i * o.c + j] += a * o.at(k, j);
                }
            }
        }
        out
    }
    pub fn zip(&self, o: &M, f: impl Fn(f64, f64) -> f64) -> M {
        assert_eq!((self.r, self.c), (o.r, o.c));
        M {
            r: self.r,
            c: self.c,
            d: self.d.iter().zip(&o.d).map(|(a, b)| f(*a, *b)).collect(),
        }
    }
    pub fn map(&self, f: impl Fn(f64) -> f64) -> M {
        M {
            r: self.r,
            c: self.c,
            d: self.d.iter().map(|a| f(*a)).collect(),
        }
    }
    pub fn sq_norm(&self) -> f64 {
        self.d.iter().map(|x| x * x).sum()
    }
    /// `[self 1]`: a column of ones appended.
    pub fn aug(&self) -> M {
        M::from_fn(self.r, self.c + 1, |i, j| {
            if j < self.c {
                self.at(i, j)
            } else {
                1.0
            }
        })
    }
    /// Solves `self · X = B` by Gaussian elimination with partial pivoting.
    pub fn solve(&self, b: &M) -> M {
        assert_eq!(self.r, self.c);
        let n = self.r;
        let mut a = self.clone();
        let mut x = b.clone();
        for col in 0..n {
            let p = (col..n)
                .max_by(|&i, &j| a.at(i, col).abs().total_cmp(&a.at(j, col).abs()))
                .unwrap();
            for j in 0..n {
                a.d.swap(col * n + j, p * n + j);
            }
            for j in 0..x.c {
                x.d.swap(col * x.c + j, p * x.c + j);
            }
            let piv = a.at(col, col);
            for i in col + 1..n {
                let f = a.at(i, col) / piv;
                for j in col..n {
                    a.d[i * n + j] -= f * a.at(col, j);
                }
                for j in 0..x.c {
                    x.d[i * x.c + j] -= f * x.at(col, j);
                }
            }
        }
        for col in (0..n).rev() {
            let piv = a.at(col, col);
            for j in 0..x.c {
                let mut s = x.at(col, j);
                for k in col + 1..n {
                    s -= a.at(col, k) * x.at(k, j);
                }
                x.d[col * x.c + j] = s / piv;
            }
        }
        x
    }
    pub fn from_tensor(t: &Tensor) -> M {
        let t = if t.rank() == 1 {
            t.unsqueeze(0).unwrap()
        } else {
            t.clone()
        };
        let (r, c) = t.dims2().unwrap();
        let d = t
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        M { r, c, d }
    }
    pub fn to_tensor(&self) -> Tensor {
        let d: Vec<f32> = self.d.iter().map(|&x| x as f32).collect();
        Tensor::from_vec(d, (self.r, self.c), &Device::Cpu).unwrap()
    }
    /// Relative Frobenius error `‖self − o‖/max(‖o‖, 1e-12)`.
    pub fn rel_err(&self, o: &M) -> f64 {
        self.zip(o, |a, b| a - b).sq_norm().sqrt() / o.sq_norm().sqrt().max(1e-12)
    }
}

/// Deterministic pseudo-random matrix (xorshift), entries uniform in `[-scale, scale]`.
pub fn rand_m(r: usize, c: usize, seed: u64, scale: f64) -> M {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    M::from_fn(r, c, |_, _| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * scale
    })
}
