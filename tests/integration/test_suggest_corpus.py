"""The onboarding corpus: eight unseen client layouts, a hand-written mapping for each, and the suggest drafts.

The hand-written mappings read every expected value (so the corpus and its expected values agree, and the
mapping language expresses every layout); the unedited ``suggest`` draft of each file must read at least
90 % of the values of every format right, and every field it gets wrong must be one it flagged as unsure.
"""

from __future__ import annotations

import pytest

from gateway.mapping import load_mapping
from tests.integration.suggest_scoring import CORPUS, FILES, score


@pytest.mark.parametrize("name", FILES)
def test_the_hand_written_mapping_reads_every_value(name: str) -> None:
    s = score(name, load_mapping(CORPUS / f"mapping_{name.split('.')[0]}.yaml"))
    assert s.total > 50 and s.right == s.total, sorted(s.wrong_fields)
