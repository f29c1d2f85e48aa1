"""A deliberately naive pandas implementation of the indicators Nova takes from TA-Lib.

Used ONLY by `bench/features.py` as the "naive pandas" baseline (and by a test that checks it agrees
with TA-Lib after warm-up); the engine never imports it. It is written the way the formulas are
usually typed into a notebook: pandas rolling/ewm on Series, `rolling.apply` where pandas has no
built-in (CCI's mean deviation, Aroon's bars-since-extreme), and a plain Python loop for the
parabolic SAR, which is path-dependent. EMAs start at the first value (`adjust=False`) rather than
at TA-Lib's SMA seed, so EMA-based indicators agree with TA-Lib only once the seed has decayed.

Each function takes the same positional arguments as the TA-Lib function of the same name and
returns the same shape (an array, or a tuple of arrays in TA-Lib's output order).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def _s(x: np.ndarray) -> pd.Series:
    return pd.Series(x, dtype="float64")


def _warm(x, k: int) -> np.ndarray:
    """A writable float64 copy of x with its first k rows set to NaN (the indicator's warm-up)."""
    out = np.array(x, dtype="float64")
    out[:k] = np.nan
    return out


def _wilder(x: pd.Series, n: int) -> pd.Series:
    return x.ewm(alpha=1.0 / n, adjust=False).mean()


def _ema(x: pd.Series, n: int) -> pd.Series:
    return x.ewm(span=n, adjust=False).mean()


def SMA(close, n=30):
    return _s(close).rolling(n).mean().to_numpy()


def EMA(close, n=30):
    return _warm(_ema(_s(close), n), n - 1)


def MACD(close, fast=12, slow=26, signal=9):
    c = _s(close)
    line = _ema(c, fast) - _ema(c, slow)
    sig = _ema(line, signal)
    warm = slow + signal - 2
    return tuple(_warm(s, warm) for s in (line, sig, line - sig))


def _true_range(high, low, close) -> pd.Series:
    h, l, c = _s(high), _s(low), _s(close)
    prev = c.shift(1)
    return pd.concat([h - l, (h - prev).abs(), (l - prev).abs()], axis=1).max(axis=1, skipna=False)


def TRANGE(high, low, close):
    return _true_range(high, low, close).to_numpy()


def NATR(high, low, close, n=14):
    atr = _wilder(_true_range(high, low, close).iloc[1:], n).reindex(range(len(close)))
    return _warm(atr / _s(close) * 100.0, n)


def _dm(high, low) -> tuple[pd.Series, pd.Series]:
    up = _s(high).diff()
    down = -_s(low).diff()
    plus = up.where((up > down) & (up > 0), 0.0)
    minus = down.where((down > up) & (down > 0), 0.0)
    return plus, minus


def _di(high, low, close, n) -> tuple[pd.Series, pd.Series]:
    plus, minus = _dm(high, low)
    tr = _true_range(high, low, close)
    atr = _wilder(tr.iloc[1:], n)
    pdi = 100.0 * _wilder(plus.iloc[1:], n) / atr
    mdi = 100.0 * _wilder(minus.iloc[1:], n) / atr
    return pdi.reindex(range(len(close))), mdi.reindex(range(len(close)))


def PLUS_DI(high, low, close, n=14):
    return _warm(_di(high, low, close, n)[0], n)


def MINUS_DI(high, low, close, n=14):
    return _warm(_di(high, low, close, n)[1], n)


def ADX(high, low, close, n=14):
    pdi, mdi = _di(high, low, close, n)
    dx = (100.0 * (pdi - mdi).abs() / (pdi + mdi)).iloc[n:]
    return _warm(_wilder(dx, n).reindex(range(len(close))), 2 * n - 1)


def AROON(high, low, n=14):
    # bars since the highest high / lowest low within the last n + 1 bars (the latest wins a tie)
    since_high = _s(high).rolling(n + 1).apply(lambda w: np.argmax(w[::-1]), raw=True)
    since_low = _s(low).rolling(n + 1).apply(lambda w: np.argmin(w[::-1]), raw=True)
    return (100.0 * (n - since_low) / n).to_numpy(), (100.0 * (n - since_high) / n).to_numpy()


def SAR(high, low, acceleration=0.02, maximum=0.2):
    """Wilder's parabolic SAR, one bar at a time (no vectorised form exists)."""
    h, l = np.asarray(high, float), np.asarray(low, float)
    out = np.full(len(h), np.nan)
    if len(h) < 2:
        return out
    up = (h[1] - h[0]) >= (l[0] - l[1])
    sar, ep, af = (l[0], h[1], acceleration) if up else (h[0], l[1], acceleration)
    for i in range(1, len(h)):
        if up:
            if l[i] < sar:
                up, sar, ep, af = False, ep, l[i], acceleration
            else:
                if h[i] > ep:
                    ep, af = h[i], min(af + acceleration, maximum)
        else:
            if h[i] > sar:
                up, sar, ep, af = True, ep, h[i], acceleration
            else:
                if l[i] < ep:
                    ep, af = l[i], min(af + acceleration, maximum)
        out[i] = sar
        sar = sar + af * (ep - sar)
        sar = min(sar, l[i], l[i - 1]) if up else max(sar, h[i], h[i - 1])
    return out


def LINEARREG_SLOPE(close, n=14):
    y = _s(close)
    t = pd.Series(np.arange(len(y), dtype="float64"))
    sy, sty = y.rolling(n).sum(), (t * y).rolling(n).sum()
    x = np.arange(n, dtype="float64")
    sxy = sty - (t - (n - 1)) * sy  # sum of x*y with x = 0..n-1 inside each window
    return ((n * sxy - x.sum() * sy) / (n * (x * x).sum() - x.sum() ** 2)).to_numpy()


def TRIX(close, n=30):
    e = _ema(_ema(_ema(_s(close), n), n), n)
    return _warm(e.pct_change() * 100.0, 3 * (n - 1) + 1)


def RSI(close, n=14):
    d = _s(close).diff().iloc[1:]
    gain, loss = _wilder(d.clip(lower=0), n), _wilder(-d.clip(upper=0), n)
    return _warm((100.0 * gain / (gain + loss)).reindex(range(len(close))), n)


def CMO(close, n=14):
    return 2.0 * RSI(close, n) - 100.0


def _stoch_k(high, low, close, n) -> pd.Series:
    hh, ll = _s(high).rolling(n).max(), _s(low).rolling(n).min()
    return 100.0 * (_s(close) - ll) / (hh - ll)


def STOCH(high, low, close, fastk=5, slowk=3, slowk_matype=0, slowd=3, slowd_matype=0):
    k = _stoch_k(high, low, close, fastk).rolling(slowk).mean()
    return _warm(k, fastk + slowk + slowd - 3), k.rolling(slowd).mean().to_numpy()


def STOCHRSI(close, n=14, fastk=5, fastd=3, fastd_matype=0):
    r = _s(RSI(close, n))
    k = 100.0 * (r - r.rolling(fastk).min()) / (r.rolling(fastk).max() - r.rolling(fastk).min())
    return _warm(k, n + fastk + fastd - 2), k.rolling(fastd).mean().to_numpy()


def WILLR(high, low, close, n=14):
    hh, ll = _s(high).rolling(n).max(), _s(low).rolling(n).min()
    return (-100.0 * (hh - _s(close)) / (hh - ll)).to_numpy()


def CCI(high, low, close, n=14):
    tp = (_s(high) + _s(low) + _s(close)) / 3.0
    mean_dev = tp.rolling(n).apply(lambda w: np.abs(w - w.mean()).mean(), raw=True)
    return ((tp - tp.rolling(n).mean()) / (0.015 * mean_dev)).to_numpy()


def ROC(close, n=10):
    return (_s(close).pct_change(n) * 100.0).to_numpy()


def MOM(close, n=10):
    return _s(close).diff(n).to_numpy()


def ULTOSC(high, low, close, p1=7, p2=14, p3=28):
    h, l, c = _s(high), _s(low), _s(close)
    prev = c.shift(1)
    low_or_prev = pd.concat([l, prev], axis=1).min(axis=1, skipna=False)
    high_or_prev = pd.concat([h, prev], axis=1).max(axis=1, skipna=False)
    bp, tr = c - low_or_prev, high_or_prev - low_or_prev
    avg = [bp.rolling(p).sum() / tr.rolling(p).sum() for p in (p1, p2, p3)]
    return (100.0 * (4 * avg[0] + 2 * avg[1] + avg[2]) / 7.0).to_numpy()


def PPO(close, fast=12, slow=26, matype=0):
    c = _s(close)
    f, s = c.rolling(fast).mean(), c.rolling(slow).mean()
    return ((f - s) / s * 100.0).to_numpy()


def BOP(open_, high, low, close):
    rng = _s(high) - _s(low)
    return ((_s(close) - _s(open_)) / rng).where(rng > 0, 0.0).to_numpy()


def BBANDS(close, n=5, up=2.0, dn=2.0, matype=0):
    c = _s(close)
    mid, sd = c.rolling(n).mean(), c.rolling(n).std(ddof=0)
    return (mid + up * sd).to_numpy(), mid.to_numpy(), (mid - dn * sd).to_numpy()


def MAX(x, n=30):
    return _s(x).rolling(n).max().to_numpy()


def MIN(x, n=30):
    return _s(x).rolling(n).min().to_numpy()


def SUM(x, n=30):
    return _s(x).rolling(n).sum().to_numpy()


def OBV(close, volume):
    sign = np.sign(_s(close).diff()).fillna(0.0)
    v = _s(volume)
    return (v.iloc[0] + (sign * v).iloc[1:].cumsum()).reindex(range(len(v)), fill_value=v.iloc[0]).to_numpy()


def _ad(high, low, close, volume) -> pd.Series:
    h, l, c = _s(high), _s(low), _s(close)
    mfm = ((c - l) - (h - c)) / (h - l)
    return (mfm.where(h > l, 0.0) * _s(volume)).cumsum()


def AD(high, low, close, volume):
    return _ad(high, low, close, volume).to_numpy()


def ADOSC(high, low, close, volume, fast=3, slow=10):
    ad = _ad(high, low, close, volume)
    return _warm(_ema(ad, fast) - _ema(ad, slow), slow - 1)


def MFI(high, low, close, volume, n=14):
    tp = (_s(high) + _s(low) + _s(close)) / 3.0
    flow = tp * _s(volume)
    d = tp.diff()
    pos, neg = flow.where(d > 0, 0.0).rolling(n).sum(), flow.where(d < 0, 0.0).rolling(n).sum()
    return _warm(100.0 * pos / (pos + neg), n)


FUNCTIONS: dict[str, Callable] = {
    name: fn for name, fn in globals().items() if name.isupper() and callable(fn)
}
