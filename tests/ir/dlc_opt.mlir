// RUN: dlc opt %s --passes=dce | filecheck %s
// RUN: not dlc opt %s --passes=no-such-pass 2>&1 | filecheck %s --check-prefix=ERR

// The `dlc` CLI runs in-process as a RUN-line tool: here `dlc opt` parses
// this file, runs dead-code elimination and prints the IR back.

// CHECK-LABEL: func.func @f(%x: tensor<3xf32> {dl.name = "x"}) -> (tensor<3xf32>) {
// CHECK-NEXT:    %0 = "dl.relu"(%x) : (tensor<3xf32>) -> tensor<3xf32>
// CHECK-NEXT:    func.return %0 : tensor<3xf32>
// CHECK-NEXT:  }
// ERR: error: unknown pass 'no-such-pass'
func.func @f(%x: tensor<3xf32>) -> (tensor<3xf32>) {
  %unused = "dl.exp"(%x) : (tensor<3xf32>) -> tensor<3xf32>
  %0 = "dl.relu"(%x) : (tensor<3xf32>) -> tensor<3xf32>
  func.return %0 : tensor<3xf32>
}
