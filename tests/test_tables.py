"""pandas where a 1-D series is taken: a DataFrame column in data.read_series, a
Series in Forecaster; pandas itself stays optional."""
import numpy as np
import pytest

import fastlstm
from fastlstm.data import read_series

pd = pytest.importorskip("pandas")


def test_a_dataframe_column_reads_as_its_csv_would(tmp_path):
    frame = pd.DataFrame({"date": pd.date_range("2026-01-01", periods=6),
                          "close": [10.0, None, 12.5, np.nan, 13.0, 14.0],
                          "volume": pd.array([5, None, 7, 8, 9, 10], dtype="Int64")})
    frame.to_csv(tmp_path / "p.csv", index=False)
    for column in ("close", "volume"):
        from_frame = read_series(frame, column)
        from_csv = read_series(tmp_path / "p.csv", column)
        np.testing.assert_array_equal(from_frame[0], from_csv[0])
        assert from_frame[1] == from_csv[1]
    assert read_series(frame, "close")[1] == 2
    with pytest.raises(ValueError, match="column 'date' holds values that are not numbers"):
        read_series(frame, "date")
    with pytest.raises(ValueError, match="has no column 'open'; its columns are 'date'"):
        read_series(frame, "open")


def test_a_forecaster_takes_a_series_with_its_index():
    values = fastlstm.data.price_series(300, seed=2)
    series = pd.Series(values, index=pd.date_range("2025-01-01", periods=300))
    fc = fastlstm.Forecaster.create(series, hidden_size=4, seed=1)
    same = fastlstm.Forecaster.create(values, hidden_size=4, seed=1)
    fc.fit(series, epochs=2, batch_size=4, seq_len=20, progress=False)
    same.fit(values, epochs=2, batch_size=4, seq_len=20, progress=False)
    np.testing.assert_array_equal(fc.forecast(series, 3), same.forecast(values, 3))
    np.testing.assert_array_equal(fc.next_values(series), same.next_values(values))
