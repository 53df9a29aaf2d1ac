// RUN: dlc opt %s --passes cse | filecheck %s
// RUN: dlc opt %s --passes cse --pass-stats 2>&1 | filecheck %s --check-prefix=STATS

// Hash-consing: same op, same operands, same attributes -> one op.  Users of
// the duplicate read the first; chains of duplicates collapse in one walk.
// CHECK-LABEL: func.func @dups
// CHECK-NEXT:    %0 = "dl.matmul"(%x, %w)
// CHECK-NEXT:    %1 = "dl.relu"(%0)
// CHECK-NEXT:    %2 = "dl.add"(%1, %1)
// CHECK-NEXT:    %3 = "dl.constant"() {dtype = f32, shape = [2], value = dense<[1.0, 2.0]> : tensor<2xf32>}
// CHECK-NEXT:    %4 = "dl.mul"(%2, %3)
// CHECK-NEXT:    func.return %4, %1
func.func @dups(%x: tensor<?x2xf32, "N">, %w: tensor<2x2xf32>) -> (tensor<?x2xf32, "N">, tensor<?x2xf32, "N">) {
  %0 = "dl.matmul"(%x, %w) : (tensor<?x2xf32, "N">, tensor<2x2xf32>) -> tensor<?x2xf32, "N">
  %1 = "dl.relu"(%0) : (tensor<?x2xf32, "N">) -> tensor<?x2xf32, "N">
  %2 = "dl.matmul"(%x, %w) : (tensor<?x2xf32, "N">, tensor<2x2xf32>) -> tensor<?x2xf32, "N">
  %3 = "dl.relu"(%2) : (tensor<?x2xf32, "N">) -> tensor<?x2xf32, "N">
  %4 = "dl.add"(%1, %3) : (tensor<?x2xf32, "N">, tensor<?x2xf32, "N">) -> tensor<?x2xf32, "N">
  %5 = "dl.constant"() {dtype = f32, shape = [2], value = dense<[1.0, 2.0]> : tensor<2xf32>} : () -> tensor<2xf32>
  %6 = "dl.constant"() {dtype = f32, shape = [2], value = dense<[1.0, 2.0]> : tensor<2xf32>} : () -> tensor<2xf32>
  %7 = "dl.mul"(%4, %5) : (tensor<?x2xf32, "N">, tensor<2xf32>) -> tensor<?x2xf32, "N">
  %8 = "dl.mul"(%4, %6) : (tensor<?x2xf32, "N">, tensor<2xf32>) -> tensor<?x2xf32, "N">
  func.return %8, %3 : tensor<?x2xf32, "N">, tensor<?x2xf32, "N">
}

// Different attributes, constants of different values (0.0 and -0.0 too),
// or swapped operands: nothing merges.
// CHECK-LABEL: func.func @distinct
// CHECK-NEXT:    "dl.sum"(%x) {axes = [0], keepdims = false}
// CHECK-NEXT:    "dl.sum"(%x) {axes = [1], keepdims = false}
// CHECK-NEXT:    "dl.constant"() {{.*}} value = dense<0.0>
// CHECK-NEXT:    "dl.constant"() {{.*}} value = dense<-0.0>
// CHECK-NEXT:    "dl.sub"(%x, %y)
// CHECK-NEXT:    "dl.sub"(%y, %x)
func.func @distinct(%x: tensor<2x2xf32>, %y: tensor<2x2xf32>) -> (tensor<2xf32>, tensor<2xf32>, tensor<f32>, tensor<f32>, tensor<2x2xf32>, tensor<2x2xf32>) {
  %0 = "dl.sum"(%x) {axes = [0], keepdims = false} : (tensor<2x2xf32>) -> tensor<2xf32>
  %1 = "dl.sum"(%x) {axes = [1], keepdims = false} : (tensor<2x2xf32>) -> tensor<2xf32>
  %2 = "dl.constant"() {dtype = f32, shape = [], value = 0.0} : () -> tensor<f32>
  %3 = "dl.constant"() {dtype = f32, shape = [], value = -0.0} : () -> tensor<f32>
  %4 = "dl.sub"(%x, %y) : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>
  %5 = "dl.sub"(%y, %x) : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>
  func.return %0, %1, %2, %3, %4, %5 : tensor<2xf32>, tensor<2xf32>, tensor<f32>, tensor<f32>, tensor<2x2xf32>, tensor<2x2xf32>
}

// STATS:      'cse'
// STATS:      (S) 4 ops-merged
