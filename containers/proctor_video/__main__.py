"""`python -m proctor_video`: stitch and analyse one webcam recording (contract in DESIGN.md)."""

from analysis_engine.runner import main
from proctor_video.kind import ProctorVideoKind

if __name__ == "__main__":
    main(ProctorVideoKind())
