"""plots.py: figures to PNG bytes, without matplotlib's chatter on the terminal."""

import warnings

from fashion_tune import plots


def test_a_crowded_figure_is_saved_whole_without_a_warning():
    """Optuna's plots of a 10,000-trial study made matplotlib warn "Tight layout not applied" at the
    end of the search; the figure is saved all the same."""
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(3, 2), layout="tight")
    ax.set_title("\n".join(["a crowded title"] * 30))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = plots.png_bytes(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert [str(w.message) for w in caught] == []
