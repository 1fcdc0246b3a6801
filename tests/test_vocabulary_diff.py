"""Setup's vocabulary editor says what an edit changes in words: "1 added (zebra), none removed.",
not "1 added (zebra), 0 removed ()."."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from demo_subset import make_demo_subset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_subset(tmp_path_factory.mktemp("vocabulary-diff") / "demo", per_split=3)


@pytest.mark.parametrize(
    "edit, says",
    [
        (lambda v: v + "\nzebra", "1 added (zebra), none removed."),
        (lambda v: "\n".join(v.split("\n")[1:]), "none added, 1 removed (aeroplane)."),
    ],
    ids=["a word added", "a word removed"],
)
def test_the_vocabulary_diff_reads_in_words(demo, edit, says):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace_root"] = str(demo)
    at.run()
    at.switch_page("views/setup.py").run()
    area = next(a for a in at.text_area if a.key.startswith("vocab_"))
    area.set_value(edit(area.value)).run()
    assert not at.exception, at.exception
    texts = [m.value for m in at.markdown]
    assert says in texts, texts
