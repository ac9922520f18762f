# Nomad ACL policy of the token Pulumi's Nomad provider uses (iot-deployer): register, update and
# purge the jobs in jobs/, and write their secrets to nomad/jobs/<job>. No exec into allocations,
# no node, agent or operator rights; the management token never leaves the nodes.
namespace "default" {
  capabilities = ["list-jobs", "parse-job", "read-job", "submit-job"]

  variables {
    path "nomad/jobs/*" {
      capabilities = ["write", "read", "list", "destroy"]
    }
  }
}
