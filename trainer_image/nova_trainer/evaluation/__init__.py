"""Statistics a quant needs before trusting a tuned strategy: costs, the Deflated Sharpe Ratio,
the Probability of Backtest Overfitting, baselines, and the out-of-sample record they are computed
from. One idea per module; nothing here imports xgboost."""
