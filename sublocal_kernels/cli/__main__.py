"""``python -m sublocal_kernels.cli`` (and ``torchrun ... -m sublocal_kernels.cli``): the ``sublocal`` command."""

import sys

from . import main

sys.exit(main())
