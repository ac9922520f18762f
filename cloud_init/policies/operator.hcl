# Nomad ACL policy of the token operators get from `pulumi stack output nomadToken` (iot-operator):
# run and inspect jobs, read logs, drain and inspect nodes, read cluster and Raft state. Changing
# ACLs, Raft membership or agent settings takes the management token, which stays on the nodes.
namespace "*" {
  policy = "write"
}

node {
  policy = "write"
}

agent {
  policy = "read"
}

operator {
  policy = "read"
}

plugin {
  policy = "read"
}
