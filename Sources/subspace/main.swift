import Subspace
print("subspace")
