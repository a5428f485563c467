"""AI-as-a-judge: rubric files (:mod:`~pytest_aie.judge.rubrics`), reading the judge's reply
(:mod:`~pytest_aie.judge.verdicts`), the ``judge`` marker's scorer
(:mod:`~pytest_aie.judge.scorer`), its bias and calibration figures
(:mod:`~pytest_aie.judge.calibration`) and flags for answers that try to instruct the judge
(:mod:`~pytest_aie.judge.injection`)."""
