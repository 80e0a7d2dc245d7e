import sys

from analysis_pipeline.schemas import main

sys.exit(main())
