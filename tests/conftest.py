import sys
from pathlib import Path

# tests/builders.py is shared by every test folder
sys.path.insert(0, str(Path(__file__).parent))
