"""Where teacher and student agree and disagree, per class, as four groups of held-out images.

=============  ===================  =================
group          teacher says          student says
=============  ===================  =================
both_yes       yes                   yes
teacher_only   yes                   no
student_only   no                    yes
both_no        no                    no
=============  ===================  =================

The two disagreement groups are where tuning has work to do; each lists its images by how far
apart the two probabilities are, largest gap first.
"""

from __future__ import annotations

import numpy as np

from .metrics import decisions

GROUPS = ("both_yes", "teacher_only", "student_only", "both_no")


def decision_groups(teacher_probs: np.ndarray, student_probs: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The image rows of each group (``GROUPS``), each sorted by |teacher − student| probability, largest first.

    teacher_probs, student_probs : ndarray of shape (n_images,), one class
    rows : int ndarray, the images to group (the held-out ones)
    """
    teacher, student = np.asarray(teacher_probs)[rows], np.asarray(student_probs)[rows]
    gap = np.abs(teacher - student)
    t, s = decisions(teacher), decisions(student)
    masks = {"both_yes": t & s, "teacher_only": t & ~s, "student_only": ~t & s, "both_no": ~t & ~s}
    return {name: rows[mask][np.argsort(-gap[mask], kind="stable")] for name, mask in masks.items()}
